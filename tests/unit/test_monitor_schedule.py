from datetime import UTC, datetime, timedelta

import pytest

from mlaas.adapters.monitorstore import next_cron_time
from mlaas.errors import InvalidInput
from mlaas.monitoring.monitors import next_due
from mlaas.monitoring.specs import MonitorRecord

T0 = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def monitor(**fields):
    return MonitorRecord.model_validate({"id": "m", "model": "m", "min_rows": 1, "schedule": {"every_seconds": 60},
                                         "created_at": T0.isoformat(), **fields})


def test_first_run_is_due_at_creation_whatever_the_sweep_time():
    assert next_due(monitor(), T0 + timedelta(seconds=5)) == T0
    assert next_due(monitor(), T0 + timedelta(seconds=50)) == T0


def test_interval_schedule_and_missed_times_count_once():
    last = {"last_due": T0.isoformat()}
    assert next_due(monitor(**last), T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=60)
    assert next_due(monitor(**last), T0 + timedelta(seconds=61)) == T0 + timedelta(seconds=60)
    # beat away for ten minutes: the latest missed due time runs, once
    assert next_due(monitor(**last), T0 + timedelta(seconds=605)) == T0 + timedelta(seconds=600)


def test_cron_schedule():
    cron = monitor(schedule={"cron": "*/15 * * * *"}, last_due=T0.isoformat())
    assert next_due(cron, T0 + timedelta(minutes=1)) == T0 + timedelta(minutes=15)
    assert next_due(cron, T0 + timedelta(minutes=50)) == T0 + timedelta(minutes=45)


def test_cron_parsing():
    assert next_cron_time("0 3 * * *", T0) == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="five fields"):
        next_cron_time("every hour", T0)
    with pytest.raises(InvalidInput, match="not a valid crontab"):
        next_cron_time("61 * * * *", T0)
