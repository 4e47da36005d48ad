"""The local stack's configuration: components, their start order, ports and ``MLAAS_STACK_*`` settings."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
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
ALT_MARKERS = {"s3": ("weed", "azurite")}  # the blob store runs SeaweedFS or Azurite (storage=azure)
ENV_PREFIX = "MLAAS_STACK_"
ENV_NAMES = {"state_dir": "MLAAS_STACK_DIR"}
GRPC_OFFSET = 10_000
TAIL_LINES = 30
PROBE_KEY = ".localstack-probe"
# Variables that would give weed an extra identity or make boto3 sign with foreign credentials.
FOREIGN_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_PROFILE", "S3_BUCKET", "S3_TABLE_BUCKET")
# Components whose crashed processes the watchdog starts again (the servers they need are left to the operator).
WATCHED = ("workers", "beat", "api")
CONFIG_FILE = "config.json"  # under run/: what the watchdog process rebuilds the stack from


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
    worker_groups: tuple[str, ...] = ("train", "evaluate", "drift", "housekeeping")  # each: comma-separated queues
    api_workers: int = 2
    components: tuple[str, ...] = COMPONENTS
    stop_timeout: float = 20.0
    restart: bool = True  # a watchdog starts crashed workers, beat and API processes again
    restart_interval: float = 1.0  # how often the watchdog looks, in seconds
    storage: str = "s3"  # the blob store: "s3" (SeaweedFS) or "azure" (Azurite, on the S3 port)
    azurite_version: str = "3.35.0"  # the npm package the stack installs for storage=azure
    tools_dir: Path = REPO_ROOT / ".tools"  # where it is installed (shared by every stack of this checkout)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().resolve())
        object.__setattr__(self, "repo_root", Path(self.repo_root).expanduser().resolve())
        object.__setattr__(self, "tools_dir", Path(self.tools_dir).expanduser().resolve())
        if self.storage not in ("s3", "azure"):
            raise StackError(f"MLAAS_STACK_STORAGE: expected s3 or azure, not {self.storage!r}")
        unknown = set(self.components) - set(COMPONENTS)
        if unknown:
            raise StackError(f"unknown components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        ports = self.ports()
        if len(set(ports.values())) != len(ports):
            raise StackError(f"ports must be distinct: {ports}")
        if not all(0 < port < 65536 for port in ports.values()):
            raise StackError(f"ports must be in 1..65535: {ports}")
        if not self.worker_groups or any(not queues(group) for group in self.worker_groups):
            raise StackError(f"worker groups need at least one queue each: {self.worker_groups}")
        if self.api_workers < 1:
            raise StackError("api_workers must be at least 1")
        if self.restart_interval <= 0:
            raise StackError("restart_interval must be positive")

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

    @classmethod
    def load(cls, path: Path) -> StackConfig:
        """A config written from ``dumps``."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in json.loads(path.read_text()).items()}
        return cls(**values)

    def dumps(self) -> str:
        """The config as JSON for ``load`` (it holds the S3 secret: write it readable by its owner only)."""
        values = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}
        return json.dumps(values, indent=2) + "\n"

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
        if component == "s3" and self.storage == "azure":
            return f"http://127.0.0.1:{self.s3_port}/devstoreaccount1"
        port = {"s3": self.s3_port, "mlflow": self.mlflow_port, "api": self.api_port}.get(component)
        return f"http://127.0.0.1:{port}" if port else ""


def _parse(name: str, kind: str, raw: str) -> object:
    """Convert one environment value to the type of the config field."""
    variable = ENV_NAMES.get(name, ENV_PREFIX + name.upper())
    if kind == "bool":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise StackError(f"{variable}: expected 1/0, true/false, yes/no or on/off, not {raw!r}")
        return raw.lower() in ("1", "true", "yes", "on")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as exc:
        raise StackError(f"{variable}: {exc}") from None
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        separator = ";" if name == "worker_groups" else ","
        return tuple(item.strip() for item in raw.split(separator) if item.strip())
    return raw


def queues(group: str) -> tuple[str, ...]:
    """Queue names of a worker group such as ``train,evaluate``."""
    return tuple(q.strip() for q in group.split(",") if q.strip())


def group_name(group: str) -> str:
    """Process name of a worker group: its queues joined by dashes."""
    return "-".join(queues(group))


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


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True

