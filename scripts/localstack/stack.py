"""The Stack: starts the units stage by stage, waits for readiness, stops them, restarts crashed ones."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from . import clientenv, watchdog
from .config import (
    ALT_MARKERS,
    COMPONENTS,
    CONFIG_FILE,
    MARKER,
    NEEDS,
    STAGES,
    TAIL_LINES,
    WATCHED,
    StackConfig,
    StackError,
    group_name,
    port_answers,
)
from .processes import (
    clean_env,
    group_members,
    pid_alive,
    read_pid,
    runs,
    send_signal,
    tail,
    terminate,
    wait_until,
    write_private,
)
from .units import Report, Unit, api_unit, beat_unit, mlflow_unit, redis_unit, s3_unit, worker_unit

T = TypeVar("T")
# What a restart takes from the first start's environment (per-start settings); the rest of the environment,
# the caller's shell with whatever credentials it holds, is the watchdog's own and is never written to disk.
SETTINGS_PREFIX = "MLAAS_"


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
        with self.locked():
            self._check_needs(wanted)
            self.new_api_key = clientenv.ensure_api_key(self.config) or self.new_api_key
            self.write_env_file()
            write_private(self.config.path("run", CONFIG_FILE), self.config.dumps())
            reports: list[Report] = []
            for stage in STAGES:
                reports += _in_parallel(self._launch, [u for u in self._units(wanted) if u.component in stage])
            if self.config.restart and self.watched() and (proc := watchdog.ensure_running(self.config)):
                self._procs[watchdog.NAME] = proc
        return reports

    def stop(self, components: Iterable[str] | None = None) -> list[Report]:
        """Stop the components by their pid files, later stages first."""
        wanted = self._select(components, COMPONENTS)
        with self.locked():
            reports: list[Report] = []
            for stage in reversed(STAGES):
                reports += _in_parallel(self._halt, [u for u in self._units(wanted, strays=True)
                                                     if u.component in stage])
            if not self.watched():
                watchdog.stop(self.config)
                if proc := self._procs.pop(watchdog.NAME, None):
                    proc.poll()
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
        return clientenv.client_env(self.config)

    def write_env_file(self) -> Path:
        """Write ``stack.env`` (shell-sourceable KEY=VALUE lines) into the state directory."""
        return clientenv.write_env_file(self.config)

    def pid_of(self, unit: Unit) -> int | None:
        """Pid of a unit's live process, or None."""
        proc = self._procs.get(unit.name)
        # poll() alone is not enough: a killed multithreaded process is a zombie (dead to us) for a
        # while before waitpid can reap it, and poll() reports it running until then.
        if proc is not None and proc.poll() is None and pid_alive(proc.pid):
            return proc.pid
        pid = read_pid(unit.pidfile)  # the watchdog may have started it again since our child died
        if pid and (proc is None or pid != proc.pid) and pid_alive(pid) and _runs(pid, unit):
            return pid
        return None

    def watched(self) -> list[Unit]:
        """Units the watchdog keeps running: started by the stack, not stopped by it since."""
        return [u for u in self._units(WATCHED, strays=True) if self._restart_file(u).exists()]

    def revive(self, unit: Unit, *, give_up: bool = False) -> Report | None:
        """Start a watched unit again, with the settings it was started with, when it died; None when it runs.

        When the start fails the unit stays watched (for another try) unless ``give_up``.
        """
        path = self._restart_file(unit)
        try:
            saved = path.read_text()
            settings: dict[str, str] = json.loads(saved)["settings"]
        except (OSError, ValueError, KeyError):
            return None
        if self.pid_of(unit) is not None:
            return None
        self._end_orphans(unit, read_pid(unit.pidfile))
        # a killed multithreaded process looks dead (a zombie leader) before its last thread closes its sockets
        wait_until(lambda: not any(port_answers(port) for port in unit.ports), 10.0)
        started = time.monotonic()
        try:
            env = {k: v for k, v in (unit.env or {}).items() if not k.startswith(SETTINGS_PREFIX)} | settings
            pid = self._spawn_and_wait(dataclasses.replace(unit, env=env), started)
        except StackError:
            if not give_up:
                write_private(path, saved)
            raise
        return self._report(unit, "restarted", pid, time.monotonic() - started)

    def _restart_file(self, unit: Unit) -> Path:
        """Where a watched unit's ``MLAAS_*`` settings are kept for restarts (its presence: the unit should run)."""
        return self.config.path("run", f"{unit.name}.restart.json")

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
    def locked(self) -> Iterator[None]:
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
        built: list[Unit] = []
        for component in COMPONENTS:
            if component not in wanted:
                continue
            if component == "workers":
                built += [self._worker(group) for group in self._worker_groups(strays)]
            else:
                built.append(getattr(self, f"_{component}")())
        return built

    def _worker_groups(self, strays: bool) -> list[str]:
        """Configured worker groups, plus groups left running by an earlier configuration."""
        groups = list(self.config.worker_groups)
        if strays:
            known = {group_name(g) for g in groups}
            for pidfile in sorted(self.config.path("run").glob("worker-*.pid")):
                name = pidfile.stem.removeprefix("worker-")
                groups += [name] if name not in known else []
        return groups

    def _app_env(self) -> dict[str, str]:
        """Environment of the mlaas processes: the client variables plus the repository on PYTHONPATH."""
        path = os.pathsep.join(filter(None, [str(self.config.repo_root), os.environ.get("PYTHONPATH", "")]))
        return clean_env(**self.env(), PYTHONPATH=path)

    def _redis(self) -> Unit:
        return redis_unit(self.config)

    def _s3(self) -> Unit:
        return s3_unit(self.config)

    def _mlflow(self) -> Unit:
        return mlflow_unit(self.config)

    def _worker(self, group: str) -> Unit:
        return worker_unit(self.config, group, env=self._app_env())

    def _beat(self) -> Unit:
        return beat_unit(self.config, env=self._app_env())

    def _api(self) -> Unit:
        return api_unit(self.config, env=self._app_env())

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
        busy = [p for p in unit.ports if port_answers(p)]
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
            write_private(unit.pidfile, f"{proc.pid}\n")
            if self.config.restart and unit.component in WATCHED:
                settings = {k: v for k, v in (unit.env or {}).items() if k.startswith(SETTINGS_PREFIX)}
                write_private(self._restart_file(unit), json.dumps({"settings": settings}))
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
        self._restart_file(unit).unlink(missing_ok=True)
        pid = self.pid_of(unit)
        proc = self._procs.pop(unit.name, None)
        if pid is not None:
            terminate(pid, self.config.stop_timeout)
        else:
            self._end_orphans(unit, proc.pid if proc else read_pid(unit.pidfile))
        if proc is not None:
            proc.poll()
        for path in (unit.pidfile, *unit.leftovers):
            path.unlink(missing_ok=True)
        return self._report(unit, "stopped" if pid else "not running", pid, 0.0)

    def _end_orphans(self, unit: Unit, leader: int | None) -> None:
        """Kill what is left of the process group of a unit's dead leader (e.g. gunicorn workers holding the port)."""
        if leader is None:
            return
        orphans = [pid for pid in group_members(leader) if _runs(pid, unit)]
        for pid in orphans:
            send_signal(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(pid) for pid in orphans), 10.0)

    def _report(self, unit: Unit, state: str, pid: int | None, seconds: float) -> Report:
        """A report row for a unit."""
        address = self.config.url(unit.component)
        if unit.component == "workers":
            address = "queues " + unit.name.removeprefix("worker-").replace("-", ",")
        return Report(unit.name, unit.component, state, pid, seconds, address, unit.log)


def _runs(pid: int, unit: Unit) -> bool:
    """Whether a pid runs the unit's program; the blob store either of its programs (SeaweedFS or Azurite), so
    that a stop finds it whichever ``MLAAS_STACK_STORAGE`` the stop is run with."""
    return any(runs(pid, marker) for marker in ALT_MARKERS.get(unit.component, (MARKER[unit.component],)))


def _in_parallel(action: Callable[[Unit], T], batch: list[Unit]) -> list[T]:
    """Run ``action`` on every unit at once; raise one error naming every failure."""
    if not batch:
        return []
    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        futures = [pool.submit(action, unit) for unit in batch]
    errors = [_describe(exc) for f in futures if (exc := f.exception()) is not None]
    if errors:
        raise StackError("\n\n".join(errors))
    return [f.result() for f in futures]


def _describe(exc: BaseException) -> str:
    """An error message, prefixed by the exception type unless it is a StackError."""
    return str(exc) if isinstance(exc, StackError) else f"{type(exc).__name__}: {exc}"
