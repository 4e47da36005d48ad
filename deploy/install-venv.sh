#!/bin/sh
# Used by the Dockerfiles' build stage: create /opt/venv and pip install the given arguments into it,
# from the wheels in /tmp/wheels alone (no index) when the build was given a wheelhouse, else from PyPI.
set -eu
python3 -m venv /opt/venv
if ls /tmp/wheels/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links /tmp/wheels "$@"
fi
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$@"
