"""The promotion history tag: capped, yet never without the newest production move rollback needs."""

from __future__ import annotations

from types import SimpleNamespace

from mlaas.errors import Unavailable
from mlaas.training.promotion import append_history, promotion_history, trimmed


def _move(frm: int | None, to: int) -> dict:
    return {"from": frm, "to": to, "by": "admin", "reason": "promoted by request"}


def _event(i: int) -> dict:
    return {"event": "rollout_changed", "candidate": 3, "production": 2, "rollout_id": f"r{i}"}


def test_short_history_is_kept_whole():
    history = [_move(None, 1), _move(1, 2), _event(0)]
    assert trimmed(history, 50) == history


def test_the_newest_entries_are_kept_when_a_move_is_among_them():
    history = [_move(None, 1)] + [_event(i) for i in range(10)] + [_move(1, 2)] + [_event(i) for i in range(3)]
    assert trimmed(history, 5) == history[-5:]


def test_rollout_events_never_push_out_the_newest_production_move():
    history = [_move(None, 1), _move(1, 2)] + [_event(i) for i in range(60)]
    kept = trimmed(history, 50)
    assert len(kept) == 50
    assert kept[0] == _move(1, 2)  # the move rollback reads, not the older one
    assert kept[1:] == history[-49:]


def test_a_history_without_any_move_keeps_the_newest():
    history = [_event(i) for i in range(60)]
    assert trimmed(history, 50) == history[-50:]


class _Registry:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def get_model(self, name: str) -> dict:
        return {"tags": dict(self.tags)}

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.tags[key] = value


class _RedisDown:
    def lock(self, *_: object, **__: object):
        raise Unavailable("redis", "redis does not answer (ConnectionError)")


def test_an_event_is_written_without_the_lock_when_redis_does_not_answer(caplog):
    ctx = SimpleNamespace(registry=_Registry(), monitors=_RedisDown())
    append_history(ctx, "m", _move(1, 2))  # type: ignore[arg-type]
    assert promotion_history(ctx, "m") == [_move(1, 2)]  # type: ignore[arg-type]
    assert "writing without it" in caplog.text
