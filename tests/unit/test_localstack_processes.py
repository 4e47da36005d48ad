"""The local stack script's process and environment helpers (no servers started)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import localstack  # noqa: E402

# The main thread leaves with pthread_exit while another thread lives on: the process stays a zombie
# leader (state Z) that waitpid cannot reap yet, as a killed multithreaded process is for a moment.
ZOMBIE_LEADER = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(30,)).start()
time.sleep(0.2)
ctypes.CDLL(None).pthread_exit(None)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def test_a_zombie_leader_is_not_running_though_popen_poll_says_it_is(tmp_path: Path) -> None:
    stack = localstack.Stack(localstack.StackConfig.with_free_ports(tmp_path))
    unit = stack.units(["beat"])[0]
    proc = subprocess.Popen([sys.executable, "-c", ZOMBIE_LEADER])
    try:
        stack._procs[unit.name] = proc
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "Z":
            assert time.monotonic() < deadline, "the child's main thread did not exit"
            time.sleep(0.02)
        assert proc.poll() is None  # what made a restart after SIGKILL skip the process
        assert stack.pid_of(unit) is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_live_child_is_running(tmp_path: Path) -> None:
    stack = localstack.Stack(localstack.StackConfig.with_free_ports(tmp_path))
    unit = stack.units(["beat"])[0]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stack._procs[unit.name] = proc
        assert stack.pid_of(unit) == proc.pid
        proc.kill()
        proc.wait(timeout=10)
        assert stack.pid_of(unit) is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_environment_sets_values_for_the_block_and_restores_what_was_there(monkeypatch) -> None:
    monkeypatch.setenv("MLAAS_TEST_KEPT", "before")
    monkeypatch.delenv("MLAAS_TEST_NEW", raising=False)
    with localstack.environment({"MLAAS_TEST_KEPT": "during", "MLAAS_TEST_NEW": "during"}):
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MLAAS_TEST_NEW'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert child == "during" and os.environ["MLAAS_TEST_KEPT"] == "during"
    assert os.environ["MLAAS_TEST_KEPT"] == "before" and "MLAAS_TEST_NEW" not in os.environ


def test_a_stack_sees_the_process_that_replaced_its_dead_child(tmp_path: Path) -> None:
    # what happens when the watchdog starts a unit again after the process this stack spawned died
    stack = localstack.Stack(localstack.StackConfig.with_free_ports(tmp_path))
    unit = stack.units(["beat"])[0]
    unit.pidfile.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=10)
    stack._procs[unit.name] = dead
    unit.pidfile.write_text(f"{dead.pid}\n")
    assert stack.pid_of(unit) is None
    # "celery" in its command line: pid_of checks a recorded pid still runs the unit's program
    replacement = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)  # celery"])
    try:
        unit.pidfile.write_text(f"{replacement.pid}\n")
        assert stack.pid_of(unit) == replacement.pid
    finally:
        replacement.kill()
        replacement.wait(timeout=10)
    assert stack.pid_of(unit) is None


def test_a_unit_stopped_by_the_stack_is_no_longer_watched_and_a_dead_one_is(tmp_path: Path) -> None:
    stack = localstack.Stack(localstack.StackConfig.with_free_ports(tmp_path))
    unit = stack.units(["beat"])[0]
    with stack.locked():
        stack._restart_file(unit).write_text('{"settings": {}}')
    assert [u.name for u in stack.watched()] == ["beat"]  # started, then died: the watchdog brings it back
    stack.stop(["beat"])
    assert stack.watched() == []
    assert stack.revive(unit) is None  # nothing to bring back


def test_the_restart_policy_comes_from_the_environment_and_bad_values_name_the_variable(tmp_path: Path) -> None:
    assert localstack.StackConfig.from_env({}).restart is True
    assert localstack.StackConfig.from_env({"MLAAS_STACK_RESTART": "0"}).restart is False
    assert localstack.StackConfig.from_env({"MLAAS_STACK_RESTART": "yes"}).restart is True
    with pytest.raises(localstack.StackError, match="MLAAS_STACK_RESTART"):
        localstack.StackConfig.from_env({"MLAAS_STACK_RESTART": "sometimes"})


def test_the_config_the_watchdog_reads_back_is_the_one_the_stack_was_started_with(tmp_path: Path) -> None:
    config = localstack.StackConfig.with_free_ports(tmp_path, worker_groups=("train,evaluate", "drift"),
                                                    restart_interval=0.5, api_workers=3)
    path = tmp_path / "config.json"
    path.write_text(config.dumps())
    assert localstack.StackConfig.load(path) == config
