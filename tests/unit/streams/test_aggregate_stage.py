"""AggregateStage on messages: replay skip, restore, DLQ with lateness, idle timer."""

from __future__ import annotations

from typing import Any

import orjson

from headrace.config import Stage
from streams.stages.aggregate import AggregateStage
from streams.stages.base import InMessage


def stage(**window: Any) -> AggregateStage:
    spec = Stage.model_validate(
        {
            "from": "in",
            "to": "out",
            "aggregate": {
                "group_by": ["c"],
                "window": {"type": "tumbling", "size": "10s", **window},
                "measures": {"n": "count()"},
            },
        }
    )
    return AggregateStage("agg", spec, idle_ms=1000)


def msg(offset: int, ts: int, c: str = "k") -> InMessage:
    return InMessage("in", 0, offset, c.encode(), orjson.dumps({"c": c}), ts)


def emitted(out: Any) -> list[tuple[str, int, int]]:
    rows = [orjson.loads(m.value) for m in out.messages]
    return [(r["c"], r["window_start"], r["n"]) for r in rows]


def test_replayed_offsets_are_skipped_after_restore() -> None:
    a = stage()
    out = a.process(0, [msg(0, 1), msg(1, 2)])
    state = {k: v for k, v in out.state}
    b = stage()
    b.restore(0, state)
    out = b.process(0, [msg(1, 2), msg(2, 3), msg(3, 10_000)])  # offset 1 again: skipped
    assert out.counts["skipped_replayed"] == 1
    assert emitted(out) == [("k", 0, 3)]
    assert [m.key for m in out.messages] == [b'["k",0]']


def test_emitted_window_state_is_deleted_and_late_record_goes_to_dlq_with_lateness() -> None:
    a = stage(grace="1s")
    out = a.process(0, [msg(0, 1), msg(1, 16_000)])
    assert emitted(out) == [("k", 0, 1)]
    assert ((("w", 0, ("k",), 0)), None) in out.state
    out = a.process(0, [msg(2, 5)])
    [dead] = out.dead
    headers = dict(dead.headers)
    assert dead.topic == "in.dlq" and headers["headrace.lateness_ms"] == b"5000"
    assert headers["headrace.stage"] == b"agg" and out.counts["late"] == 1


def test_idle_timer_closes_windows_only_for_caught_up_partitions() -> None:
    a = stage()
    a.process(0, [msg(0, 1)], wall_ms=100_000)
    assert a.tick(100_500, frozenset({0})).messages == []  # not idle long enough
    assert a.tick(120_000, frozenset()).messages == []  # idle, but has lag: never by clock
    out = a.tick(110_001, frozenset({0}))  # 10 s idle: watermark 1 + 10_001 >= 10_000
    assert emitted(out) == [("k", 0, 1)]
    assert a.tick(130_000, frozenset({0})).messages == []  # emitted once


def test_upstream_replay_duplicates_are_skipped_by_source_header() -> None:
    a = stage()

    def src(offset: int, source: int) -> InMessage:
        m = msg(offset, 1)
        return InMessage(
            m.topic,
            0,
            offset,
            m.key,
            m.value,
            1,
            (("headrace.source", f"up|2|{source}|0".encode()),),
        )

    a.process(0, [src(0, 10), src(1, 11)])
    out = a.process(0, [src(2, 11), src(3, 12)])  # upstream re-sent 11 after its crash
    assert out.counts["skipped_duplicate"] == 1
    assert a.parts[0].agg.windows[(("k",), 0)][0] == [3]
