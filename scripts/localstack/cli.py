"""The ``up``, ``down``, ``status``, ``logs``, ``env`` and ``watch`` commands."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import watchdog
from .config import COMPONENTS, CONFIG_FILE, TAIL_LINES, StackConfig, StackError
from .processes import tail
from .stack import Stack
from .units import Report

USAGE = """Run the mlaas stack (Redis, S3, MLflow, Celery workers and beat, API) as local processes.

Usage: python -m scripts.localstack up|down|status|logs|env [--only redis,s3,mlflow]

Every process binds 127.0.0.1 and keeps its pid file, log and data under the state directory
(``.stack`` by default). Settings come from ``MLAAS_STACK_*`` variables, see ``StackConfig``.
With MLAAS_STACK_RESTART=1 (the default) ``up`` leaves a watchdog running that starts crashed
workers, beat and API processes again; ``down`` stops it.
"""


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
    if "s3" in {r.component for r in reports} and c.storage == "azure":
        print(f"\nAzure Blob (Azurite): account devstoreaccount1 at {c.url('s3')}  containers {', '.join(c.buckets)}"
              "  (connection string in stack.env)")
    elif "s3" in {r.component for r in reports}:
        print(f"\nS3 credentials: access key {c.s3_access_key}  secret key {c.s3_secret_key}"
              f"  buckets {', '.join(c.buckets)}")
    env_file = _relative(c.path("stack.env"))
    if stack.new_api_key:
        print(f"\nAPI key (admin; shown once, kept in {env_file} as MLAAS_API_KEY): {stack.env()['MLAAS_API_KEY']}")
    print(f"Client variables: {env_file}  (set -a; . {env_file}; set +a)")
    _print_watchdog(stack)
    print(f"up in {time.monotonic() - began:.1f}s")
    return 0


def _print_watchdog(stack: Stack) -> None:
    """Say whether crashed processes will be started again."""
    running = watchdog.pid(stack.config)
    if running:
        print(f"Watchdog: pid {running}, restarts crashed {', '.join(u.name for u in stack.watched())}"
              f" (log {_relative(watchdog.files(stack.config)[0])})")
    elif not stack.config.restart:
        print("Watchdog: off (MLAAS_STACK_RESTART=0)")


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
    _print_watchdog(stack)
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
        description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "logs", "env", "watch"))
    parser.add_argument("--state-dir", type=Path, help="the stack's state directory (default: MLAAS_STACK_DIR)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(COMPONENTS)}")
    parser.add_argument("--lines", type=int, default=TAIL_LINES, help="lines of each log to show")
    parser.add_argument("--follow", metavar="NAME", help="with logs: follow one process's log")
    args = parser.parse_args(argv)
    only = tuple(n.strip() for n in args.only.split(",") if n.strip()) if args.only else None
    try:
        if args.command == "watch":  # started by ``up``: the config the stack was started with
            state = args.state_dir or StackConfig.from_env().state_dir
            return watchdog.watch(Stack(StackConfig.load(Path(state) / "run" / CONFIG_FILE)))
        overrides = {"state_dir": args.state_dir} if args.state_dir else {}
        stack = Stack(StackConfig.from_env(**overrides))
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

