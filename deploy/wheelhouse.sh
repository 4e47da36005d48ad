#!/usr/bin/env bash
# Wheels for every image of the deployment, made on the host with the host's pip (containers here cannot
# verify PyPI's TLS). Cached in .deploy-cache/wheelhouse and remade only when a requirements file changes.
#   deploy/wheelhouse.sh [PYTHON]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:-${PYTHON:-python3}}
OUT="$ROOT/.deploy-cache/wheelhouse"
FILES=(requirements.txt deploy/requirements-mlflow.txt deploy/requirements-flower.txt deploy/requirements-wheelhouse.txt)
key=$(cd "$ROOT" && cat "${FILES[@]}" | sha256sum | cut -c1-16)
if [ -f "$OUT/.key" ] && [ "$(cat "$OUT/.key")" = "$key" ]; then
  echo "wheelhouse: cached ($(find "$OUT" -name '*.whl' | wc -l) wheels, key $key)"
  exit 0
fi
mkdir -p "$OUT"  # kept: unchanged wheels stay the same files, so image layers stay cached
args=()
for file in "${FILES[@]}"; do args+=(-r "$ROOT/$file"); done
# pip wheel: downloads wheels, and builds one for any project published only as a source archive.
# (pip's notes about local index folders without a project are dropped.)
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$OUT" -c "$ROOT/requirements.txt" "${args[@]}" \
  2> >(grep -v "^WARNING: Location 'file:" >&2)
echo "$key" >"$OUT/.key"
echo "wheelhouse: made ($(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1))"
