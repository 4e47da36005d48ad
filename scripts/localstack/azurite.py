"""Azurite, the Azure Storage emulator, as the stack's blob store (``MLAAS_STACK_STORAGE=azure``).

The npm package is installed by the stack itself, pinned, into ``<tools_dir>/azurite-<version>`` (a fresh machine
has Node.js and npm but not Azurite). Its blob service alone runs, on the stack's S3 port, with the emulator's
well-known development account.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from typing import Any

from .config import PROBE_KEY, StackConfig, StackError

ACCOUNT = "devstoreaccount1"
# The emulator's published development key (Azurite's documentation): not a secret, the same on every machine.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_TIMEOUT = 300.0


def endpoint(config: StackConfig) -> str:
    """The blob endpoint of the emulator's account."""
    return f"http://127.0.0.1:{config.s3_port}/{ACCOUNT}"


def connection_string(config: StackConfig) -> str:
    """What clients (mlaas, MLflow's Azure artifact repository) connect with."""
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint(config)};")


def artifacts_destination(config: StackConfig) -> str:
    """MLflow's ``wasbs://`` artifact root (the account in it is only a name: the connection string routes)."""
    return f"wasbs://{config.mlflow_bucket}@{ACCOUNT}.blob.core.windows.net/"


def binary(config: StackConfig) -> str:
    """``azurite-blob`` of the pinned version, installed with npm on first use (under a lock)."""
    home = config.tools_dir / f"azurite-{config.azurite_version}"
    program = home / "node_modules" / ".bin" / "azurite-blob"
    if program.exists():
        return str(program)
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise StackError("Azurite needs Node.js and npm: install them (sudo apt-get install -y nodejs npm)")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not program.exists():
            argv = [npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", "--no-save",
                    "--loglevel=error", f"azurite@{config.azurite_version}"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
            if done.returncode != 0 or not program.exists():
                raise StackError(f"npm install azurite@{config.azurite_version} failed: {done.stderr[-2000:]}")
    return str(program)


def command(config: StackConfig) -> list[str]:
    """The ``azurite-blob`` command line (``--skipApiVersionCheck``: the SDK speaks a newer API version)."""
    return [binary(config), "--blobHost", "127.0.0.1", "--blobPort", str(config.s3_port),
            "--location", str(config.path("azurite")), "--skipApiVersionCheck", "--disableTelemetry"]


def _client(config: StackConfig) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection_string(config), connection_timeout=2,
                                                    read_timeout=10, retry_total=0)


def probe(config: StackConfig) -> bool:
    """Whether an authenticated put then get of a small blob round-trips (in the first container, made here)."""
    client = _client(config)
    _create(client, config.buckets[:1])
    blob = client.get_blob_client(config.buckets[0], PROBE_KEY)
    payload = f"ready {time.time()}".encode()
    blob.upload_blob(payload, overwrite=True)
    body = blob.download_blob().readall()
    blob.delete_blob()
    return bool(body == payload)


def ensure_containers(config: StackConfig) -> None:
    """Create the configured containers that do not exist yet."""
    _create(_client(config), config.buckets)


def _create(client: Any, names: tuple[str, ...]) -> None:
    from azure.core.exceptions import ResourceExistsError

    for name in names:
        with contextlib.suppress(ResourceExistsError):
            client.create_container(name)
