"""A bare Celery app for bench_jobs.py: mlaas's broker settings, one trivial task, results in Redis.

Worker: ``python -m celery -A celery_echo:app worker -Q bench-echo --concurrency 1`` (cwd bench/),
with MLAAS_REDIS_URL pointing at the broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlaas.adapters.queue import make_celery  # noqa: E402
from mlaas.settings import Settings  # noqa: E402

settings = Settings.from_env()
app = make_celery(settings, "bench-echo")
app.conf.update(result_backend=settings.redis_url, task_ignore_result=False, task_default_queue="bench-echo",
                task_routes={}, task_queues=None)


@app.task(name="bench.echo")
def echo(value: int) -> int:
    """Return the argument: a round trip through broker, worker and result backend."""
    return value
