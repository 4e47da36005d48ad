"""Shared helpers of the benchmarks: the machine, quiet waiting, processes and their CPU, tables, results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

QUIET_LOAD = 1.5  # heavy rounds wait (a bounded time) for a 1-minute load average below this
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the machine ------------------------------------------------------------------------------------
def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def wait_quiet(limit: float = QUIET_LOAD, max_wait: float = 120.0) -> float:
    """Wait until the load average is below ``limit`` (at most ``max_wait`` s); returns the load then."""
    deadline = time.monotonic() + max_wait
    while load_average() >= limit and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    versions = {}
    for name in ("numpy", "pandas", "sklearn", "scipy", "mlflow", "flask", "gunicorn", "celery"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    meminfo = Path("/proc/meminfo").read_text().split()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(int(meminfo[1]) / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release(), "versions": versions,
            "load_at_start": round(load_average(), 2)}


# -- processes --------------------------------------------------------------------------------------

def announce() -> dict[str, Any]:
    """The machine's description, printed as every benchmark starts."""
    info = machine()
    print(f"machine: {info['cores']} cores, {info['cpu']}, load {info['load_at_start']}", flush=True)
    return info


def titanic() -> tuple[Any, Any]:
    """The titanic training and test frames of examples/data/titanic."""
    import pandas as pd

    folder = ROOT / "examples" / "data" / "titanic"
    return pd.read_csv(folder / "titanic.csv"), pd.read_csv(folder / "titanic_test.csv")

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (live ones)."""
    tree, total, todo = _children(), 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        todo += tree.get(current, [])
    return total


class Process:
    """A server the benchmark starts in its own session and stops by its process group."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 log: Path, cwd: Path = ROOT) -> None:
        self.name = name
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, timeout: float = 120.0, ok: Callable[[int], bool] = lambda s: s < 500) -> None:
        """Wait until ``url`` answers (any status ``ok`` accepts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if ok(response.status):
                        return
            except urllib.error.HTTPError as exc:
                if ok(exc.code):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout} s: see {self.log}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


# -- the local stack --------------------------------------------------------------------------------
def start_stack(name: str, components: Sequence[str], **overrides: Any) -> tuple[Any, str]:
    """The local stack (scripts/localstack/) on free ports under bench/results/; returns (stack, admin key)."""
    import localstack

    from mlaas.auth import generate_key

    key, entry = generate_key("bench-admin")
    os.environ["MLAAS_API_KEYS"] = entry  # the API processes inherit it
    os.environ["MLAAS_RATE_LIMIT_PER_MINUTE"] = "0"  # benchmarks measure the service, not the default limit
    state = RESULTS / f"stack-{name}"
    shutil.rmtree(state, ignore_errors=True)
    config = localstack.StackConfig.with_free_ports(state, components=tuple(components), **overrides)
    stack = localstack.Stack(config)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack, key


def start_api(stack: Any, name: str, env: dict[str, str], workers: int = 2) -> tuple[Process, str]:
    """Another API beside the stack's, launched exactly as the stack launches its own; returns (process, url)."""
    import localstack

    port = localstack.free_ports(1)[0]
    config = dataclasses.replace(stack.config, api_port=port, api_workers=workers,
                                 state_dir=stack.config.path(f"api-{name}"))
    unit = localstack.Stack(config)._api()
    for folder in ("run", "logs", "tmp"):
        config.path(folder).mkdir(parents=True, exist_ok=True)
    process = Process(f"api-{name}", unit.command(), env={**(unit.env or {}), **stack.env(), **env},
                      log=config.path("logs", "stdout.log"))
    url = f"http://127.0.0.1:{port}"
    process.wait_http(f"{url}/health")
    return process, url


# -- numbers ----------------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float]:
    return (min(values), max(values)) if values else (float("nan"), float("nan"))


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print (and return) a Markdown table."""
    lines = [f"\n### {title}\n", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write results as JSON under bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return path


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"
