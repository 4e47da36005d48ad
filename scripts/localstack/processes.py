"""Process helpers: pid files, liveness that sees zombies as dead, signals to process groups, /proc reading."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .config import TAIL_LINES


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


def write_private(path: Path, text: str) -> None:
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
        return send_signal(pid, 0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    """A process's command line, empty when unknown."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def runs(pid: int, program: str) -> bool:
    """Whether a pid still runs ``program`` rather than a later process that reused the pid."""
    cmdline = _cmdline(pid)
    return not cmdline or program in cmdline


def send_signal(pid: int, sig: int, *, group: bool = False) -> bool:
    """Send a signal to a process or its group; False when nothing received it."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
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
    send_signal(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), timeout):
        send_signal(pid, signal.SIGKILL, group=leads_group)
        wait_until(lambda: not pid_alive(pid), 5.0)
    if leads_group and group_members(pid):
        send_signal(pid, signal.SIGTERM, group=True)
        if not wait_until(lambda: not group_members(pid), 3.0):
            send_signal(pid, signal.SIGKILL, group=True)


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


def group_members(pgid: int) -> list[int]:
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


def clean_env(drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The current environment minus ``drop``, plus ``extra``; local addresses bypass proxies."""
    env = {k: v for k, v in os.environ.items() if k not in set(drop)}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, **extra)
    return env

