"""The watchdog: a small process ``start`` leaves running that starts crashed workers, beat and the API again.

A unit is watched from the moment the stack starts it until the stack stops it (``run/<name>.restart.json``,
readable by its owner only, holds the ``MLAAS_*`` settings it was started with, so a restart is the same
command with the same settings; the rest of the environment is the watchdog's, inherited from ``start``).
A process that dies any other way (SIGKILL, OOM kill, a crash) is started again within about
``restart_interval`` seconds plus its readiness time; one that fails to come back is tried again after
each of ``BACKOFF`` and then left stopped. The watchdog exits once nothing is watched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .config import StackConfig
from .processes import clean_env, pid_alive, read_pid, runs, terminate, write_private

if TYPE_CHECKING:
    from .stack import Stack
    from .units import Report

NAME = "watchdog"
BACKOFF = (2.0, 5.0, 15.0)  # seconds before the second, third and fourth try of a unit that did not come back
MARKER = "localstack watch"  # in the watchdog's command line, whichever way the package was imported


def files(config: StackConfig) -> tuple[Path, Path]:
    """Log and pid file of the watchdog."""
    return config.path("logs", f"{NAME}.log"), config.path("run", f"{NAME}.pid")


def pid(config: StackConfig) -> int | None:
    """Pid of the stack's running watchdog, or None."""
    found = read_pid(files(config)[1])
    return found if found and pid_alive(found) and runs(found, MARKER) else None


def ensure_running(config: StackConfig) -> subprocess.Popen[bytes] | None:
    """Start the watchdog unless it runs already; the new process, or None when one was running."""
    if pid(config) is not None:
        return None
    log, pidfile = files(config)
    package = __package__ or "localstack"
    root = Path(__file__).resolve().parents[package.count(".") + 1]  # the folder the package is imported from
    env = clean_env(PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")])))
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", package, "watch", "--state-dir", str(config.state_dir)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    write_private(pidfile, f"{proc.pid}\n")
    return proc


def stop(config: StackConfig) -> int | None:
    """Stop the watchdog; its pid, or None when none ran."""
    found = pid(config)
    if found is not None:
        terminate(found, 5.0)
    files(config)[1].unlink(missing_ok=True)
    return found


def _say(message: str) -> None:
    """One timestamped line in the watchdog's log."""
    print(f"{time.strftime('%F %T')} watchdog: {message}", flush=True)


def watch(stack: Stack) -> int:
    """Start crashed watched units again until nothing is watched any more (the stack stopped them all)."""
    failures: dict[str, int] = {}
    not_before: dict[str, float] = {}
    _say(f"watching {stack.config.state_dir} every {stack.config.restart_interval:g} s")
    while stack.config.path("run").is_dir():
        with stack.locked():
            watched = stack.watched()
            if not watched:
                break
            due = [u for u in watched if time.monotonic() >= not_before.get(u.name, 0.0)]
            if due:  # in parallel: a worker that takes 10 s to import does not hold the API back
                with ThreadPoolExecutor(max_workers=len(due)) as pool:
                    tries = {u.name: failures.get(u.name, 0) for u in due}
                    futures = {u.name: pool.submit(stack.revive, u, give_up=tries[u.name] >= len(BACKOFF))
                               for u in due}
                for name, future in futures.items():
                    _record(name, future, tries[name], failures, not_before)
        time.sleep(stack.config.restart_interval)
    _say("nothing left to watch")
    return 0


def _record(name: str, future: Future[Report | None], tries: int, failures: dict[str, int],
            not_before: dict[str, float]) -> None:
    """Log what one revival did and schedule the next try of a unit that did not come back."""
    exc = future.exception()
    if exc is None:
        report = future.result()
        if report is not None:
            failures.pop(name, None)
            _say(f"{name} had died; restarted as pid {report.pid}, ready in {report.seconds:.1f} s")
        return
    failures[name] = tries + 1
    if tries >= len(BACKOFF):
        _say(f"{name} did not come back after {tries + 1} tries; left stopped: {exc}")
    else:
        not_before[name] = time.monotonic() + BACKOFF[tries]
        _say(f"{name} did not come back, trying again in {BACKOFF[tries]:g} s: {exc}")
