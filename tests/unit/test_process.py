"""Process set-up happens at entry points only: importing a module or building an adapter changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mlaas.process import configure_process
from mlaas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                    "MLFLOW_HTTP_REQUEST_TIMEOUT", "TMPDIR", "PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture
def clean_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what configure_process sets, whatever the test does."""
    for name in MLFLOW_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)


def _run(code: str, tmp_path: Path) -> dict[str, object]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in MLFLOW_VARIABLES}
    env.update(TMPDIR=str(scratch), MLAAS_TMP_DIR=str(tmp_path / "mlaas-tmp"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["scratch"] = sorted(p.name for p in scratch.iterdir())
    return result


def test_importing_the_celery_app_writes_no_environment_and_makes_no_temp_dir(tmp_path):
    result = _run("import json, os, tempfile\n"
                  "before = dict(os.environ)\n"
                  "import worker.celery_app\n"
                  "print(json.dumps({'changed': sorted(k for k in {*before, *os.environ}"
                  " if before.get(k) != os.environ.get(k)), 'tempdir': tempfile.tempdir}))", tmp_path)
    assert result == {"changed": [], "tempdir": None, "scratch": []}
    assert not (tmp_path / "mlaas-tmp").exists()


def test_building_the_registry_leaves_the_process_alone(tmp_path):
    result = _run("import json, os, tempfile\n"
                  "from mlaas.settings import Settings\n"
                  "from mlaas.adapters.registry import MlflowRegistry\n"
                  "before = dict(os.environ)\n"
                  "MlflowRegistry(Settings.from_env())\n"
                  "import mlflow\n"
                  "print(json.dumps({'changed': sorted(k for k in {*before, *os.environ}"
                  " if before.get(k) != os.environ.get(k)), 'tempdir': tempfile.tempdir,"
                  " 'uri_set': mlflow.is_tracking_uri_set()}))", tmp_path)
    assert result == {"changed": [], "tempdir": None, "uri_set": False, "scratch": []}


def test_configure_process_points_mlflow_and_temp_files_at_the_settings(clean_process, tmp_path):
    settings = Settings(mlflow_tracking_uri="http://mlflow.example:5000", mlflow_timeout=0.5,
                        tmp_dir=str(tmp_path / "tmp"))
    configure_process(settings)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.example:5000"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"  # rounded up: 0 would mean no wait at all
    assert os.environ["TMPDIR"] == tempfile.gettempdir() == str(tmp_path / "tmp")
    assert Path(tempfile.mkdtemp()).parent == tmp_path / "tmp"
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # only a parent that forks workers asks for it


def test_metrics_dir_is_made_once_or_emptied_of_an_earlier_run(clean_process, tmp_path):
    settings = Settings(tmp_dir=str(tmp_path / "tmp"))
    configure_process(settings, metrics_dir=True)
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.parent == tmp_path / "tmp"
    (made / "counter_123.db").write_bytes(b"stale")
    configure_process(settings, metrics_dir=True)
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) == made and list(made.iterdir()) == []


def test_worker_process_builds_its_context_once_at_process_init():
    from mlaas.adapters.jobstore import PatientJobStore
    from worker import tasks

    tasks._PROCESS.clear()
    with pytest.raises(RuntimeError, match="not initialised"):
        tasks.context()
    try:
        tasks._start_process()
        first = tasks.process()
        assert isinstance(first.context.jobs, PatientJobStore)
        assert tasks.context() is first.context and tasks.process().buffer is first.buffer
    finally:
        tasks._PROCESS.clear()


AUTOGROUP = Path("/proc/self/autogroup")
NICE_PROBE = ("import json, os\n"
              "from celery.signals import celeryd_init\n"
              "import worker.celery_app\n"
              "celeryd_init.send(sender='probe@host', instance=None, conf=worker.celery_app.app.conf, options={})\n"
              "group = open('/proc/self/autogroup').read().split()[-1] if os.path.exists('/proc/self/autogroup')"
              " else None\n"
              "child = os.fork()\n"
              "if child == 0:\n"
              "    os._exit(0 if os.sched_getscheduler(0) == os.sched_getscheduler(os.getppid()) else 1)\n"
              "_, status = os.waitpid(child, 0)\n"
              "print(json.dumps({'nice': os.nice(0), 'group': group, 'policy': os.sched_getscheduler(0),"
              " 'child_inherits': status == 0}))")


def _worker_start(tmp_path: Path, nice: str | None, sched_idle: str | None = None) -> dict[str, object]:
    """A Celery worker's start signal in a process leading a session of its own (as a service or container)."""
    env = {key: value for key, value in os.environ.items() if key not in MLFLOW_VARIABLES}
    env.pop("MLAAS_WORKER_NICE", None)
    env.pop("MLAAS_WORKER_SCHED_IDLE", None)
    env.update(MLAAS_TMP_DIR=str(tmp_path / "mlaas-tmp"), PYTHONPATH=str(ROOT), PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    if nice is not None:
        env["MLAAS_WORKER_NICE"] = nice
    if sched_idle is not None:
        env["MLAAS_WORKER_SCHED_IDLE"] = sched_idle
    out = subprocess.run([sys.executable, "-c", NICE_PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120, start_new_session=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_worker_nice_lowers_the_worker_and_its_session_at_start(tmp_path):
    untouched = _worker_start(tmp_path, None)  # what the worker inherits (a test run may itself be niced)
    assert untouched["nice"] == os.nice(0)
    niced = _worker_start(tmp_path, "19")
    assert niced["nice"] == 19
    if AUTOGROUP.exists():  # with autogroup, the session competes as a whole: it is lowered too
        assert niced["group"] == "19" and untouched["group"] != "19"


def test_worker_sched_idle_puts_the_worker_and_its_pool_under_sched_idle(tmp_path):
    untouched = _worker_start(tmp_path, None)
    assert untouched["policy"] == os.sched_getscheduler(0) != os.SCHED_IDLE
    idle = _worker_start(tmp_path, "19", "true")
    assert idle["policy"] == os.SCHED_IDLE  # the pool forks after this signal: its processes inherit the policy
    assert idle["child_inherits"] and idle["nice"] == 19


def test_lower_priority_never_raises_priority(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import os\nfrom mlaas.process import lower_priority\n"
                          "os.nice(10)\nprint(lower_priority(5), os.nice(0))"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60, start_new_session=True)
    returned, now = map(int, out.stdout.split())
    assert returned == now >= 10
