"""The promotion history tag: capped, yet never without the newest production move rollback needs."""

from __future__ import annotations

from mlaas.training.promotion import trimmed


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
