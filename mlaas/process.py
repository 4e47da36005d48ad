"""Process-wide set-up, done once by each entry point: the app factory, gunicorn's master, Celery worker and beat.

The adapters only use what is set here: MLflow's client reads its tracking URI and HTTP retry settings from
the environment, temp files go to ``MLAAS_TMP_DIR`` (MLflow leaves a folder per model logged or loaded), and
a parent that forks workers gives them one Prometheus multiprocess directory. ``limit_native_threads`` sizes
the native thread pools (OpenMP, BLAS) of each serving or training process from the cores and the process count:
without it every gunicorn worker's OpenMP pool spins over all the cores, and a HistGradientBoosting model's
throughput collapses under concurrent requests. ``lower_priority`` makes a worker yield the CPU to the API
(``MLAAS_WORKER_NICE``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile

from mlaas.settings import Settings

log = logging.getLogger(__name__)
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
AUTOGROUP = "/proc/self/autogroup"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def configure_process(settings: Settings, *, metrics_dir: bool = False) -> None:
    """Set this process's (and its children's) MLflow client, temp dir and, with ``metrics_dir``, Prometheus dir.

    ``metrics_dir`` is for a process that forks workers (gunicorn's master, Celery's main process) and must
    run before anything imports prometheus_client: the configured ``PROMETHEUS_MULTIPROC_DIR`` is emptied
    of an earlier run's files, or a new one is made.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(settings.mlflow_timeout)))
    os.environ["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.tmp_dir:
        os.makedirs(settings.tmp_dir, exist_ok=True)
        os.environ["TMPDIR"] = settings.tmp_dir
        tempfile.tempdir = settings.tmp_dir
    if metrics_dir:
        _fresh_metrics_dir()


def _fresh_metrics_dir() -> None:
    path = os.environ.get(METRICS_DIR_VARIABLE)
    if not path:
        os.environ[METRICS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="mlaas-prom-")
        return
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def native_threads(settings: Settings, processes: int) -> int:
    """Threads per process for native pools: ``MLAAS_NATIVE_THREADS``, else the cores shared by ``processes``."""
    if settings.native_threads > 0:
        return settings.native_threads
    return max(1, usable_cores() // max(1, processes))


def process_threads(settings: Settings) -> int:
    """The native threads this process predicts with: ``MLAAS_NATIVE_THREADS``, else its OpenMP limit as
    ``limit_native_threads`` left it (libraries that ignore that limit, as LightGBM's scikit-learn API, are told)."""
    if settings.native_threads > 0:
        return settings.native_threads
    return openmp_threads()


def openmp_threads() -> int:
    """This process's OpenMP limit (``limit_native_threads`` sets it from the settings), else its cores."""
    from threadpoolctl import threadpool_info

    limits = [int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "openmp"]
    return min(limits) if limits else usable_cores()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_native_threads(settings: Settings, processes: int) -> int:
    """Size this process's (and its future children's) OpenMP and BLAS pools; returns the thread count.

    The variables reach libraries a child loads after the fork; threadpoolctl resizes those already loaded.
    """
    threads = native_threads(settings, processes)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    return threads


def lower_priority(nice: int) -> int:
    """Lower this process's (and its future children's) CPU priority to ``nice``; returns the niceness it has.

    With Linux's autogroup scheduling (``kernel.sched_autogroup_enabled``) the CPU is shared between sessions
    first and by niceness only inside one: a niced worker in a session of its own (a service, a container, a
    process started with setsid) still takes a full share against the API. So the session's autogroup is given
    the same niceness too (it holds only the worker's processes when the worker leads its own session; started
    from a shell, the shell's session is lowered with it). Raising priority is never attempted.
    """
    current = os.nice(0)
    if nice > current:
        current = os.nice(nice - current)
    if nice > 0:
        _lower_autogroup(nice)
    return current


def idle_policy() -> bool:
    """Put this process (and its future children) under Linux's SCHED_IDLE; returns whether it runs under it.

    Nice 19 still gets a slice when the API wants the CPU: a waking API process may wait for the worker's
    slice to end. A SCHED_IDLE process is preempted as soon as a process of another policy wakes, so work
    that can wait (scoring a shadow rollout) runs only on the CPU time the API leaves. Needs no privilege;
    where the kernel has no such policy the process keeps its own and a warning says so.
    """
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        log.warning("SCHED_IDLE is not available here: the worker keeps its scheduling policy")
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:
        log.warning("the worker's scheduling policy was not changed to SCHED_IDLE (%s)", exc)
    return os.sched_getscheduler(0) == policy


def _lower_autogroup(nice: int) -> None:
    try:
        with open(AUTOGROUP) as file:  # "/autogroup-123 nice 0"
            group_nice = int(file.read().split()[-1])
        if nice > group_nice:
            with open(AUTOGROUP, "w") as file:
                file.write(str(nice))
    except FileNotFoundError:  # not Linux, or a kernel without autogroup: niceness alone orders processes
        return
    except (OSError, ValueError, IndexError) as exc:
        log.warning("the session's CPU priority was not lowered (%s): nice %d holds within it only", exc, nice)
