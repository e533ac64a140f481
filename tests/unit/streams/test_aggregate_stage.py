"""AggregateStage on messages: replay skip, restore, DLQ with lateness, idle timer, kill -9."""

from __future__ import annotations

import pickle
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


def test_emitted_window_is_closed_then_deleted_and_late_record_goes_to_dlq() -> None:
    a = stage(grace="1s")
    out = a.process(0, [msg(0, 1), msg(1, 16_000)])
    assert emitted(out) == [("k", 0, 1)]
    [message] = out.messages
    closed = ("closed", (message.key, message.value, message.timestamp_ms), 1)
    assert (("w", 0, ("k",), 0), closed) in out.state  # kept until the output is out
    assert out.after == [(("w", 0, ("k",), 0), None)]  # then deleted
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


# -- crash safety: any prefix of a batch's state writes, replay from the committed offset ----


def _stream() -> list[InMessage]:
    """Records of three groups over four 10 s windows, out of order within the grace."""
    out = []
    for i in range(48):
        ts = i * 1000 - (1500 if i % 5 == 3 else 0)
        out.append(msg(i, max(ts, 0), "abc"[i % 3]))
    return out


def _saved(writes: list[Any]) -> list[Any]:
    """State writes as the changelog keeps them (copies, as the runtime pickles them)."""
    copied: list[Any] = pickle.loads(pickle.dumps(writes))
    return copied


def _run(batches: list[list[InMessage]]) -> tuple[list[Any], list[Any], dict[Any, Any]]:
    """(outputs, batch outputs, state) of a run without a crash."""
    a = stage(grace="2s")
    table: dict[Any, Any] = {}
    messages: list[Any] = []
    outs: list[Any] = []
    for batch in batches:
        out = a.process(0, batch)
        outs.append(out)
        table.update(_saved(out.state))
        messages.extend(out.messages)
        for key, value in out.after:
            table.pop(key, None) if value is None else table.update({key: value})
    return messages, outs, table


def _final(messages: list[Any]) -> dict[bytes, bytes]:
    """Per key: the one value it was emitted with (fails on two different values)."""
    seen: dict[bytes, bytes] = {}
    for m in messages:
        assert seen.setdefault(m.key, m.value) == m.value, f"{m.key!r} emitted differently"
    return seen


def test_a_kill_after_any_prefix_of_a_batchs_state_never_changes_an_emitted_window() -> None:
    records = _stream()
    batches = [records[i : i + 7] for i in range(0, len(records), 7)]
    expected, _, _ = _run(batches)
    want = _final(expected)
    for crash in range(len(batches)):
        # batches before ``crash`` fully done and committed; ``crash`` dies after persisting
        # ``cut`` of its state writes: its outputs were not produced (state goes first)
        done, _, table = _run(batches[:crash])
        probe = stage(grace="2s")
        for earlier in batches[:crash]:
            probe.process(0, earlier)
        writes = _saved(probe.process(0, batches[crash]).state)
        for cut in range(len(writes) + 1):
            state = dict(_saved([*table.items(), *writes[:cut]]))
            state = {k: v for k, v in state.items() if v is not None}
            b = stage(grace="2s")
            b.restore(0, state)
            replay = list(done)
            for batch in batches[crash:]:  # from the committed offset on
                replay.extend(b.process(0, batch).messages)
            assert _final(replay) == want, (crash, cut)


def test_a_kill_before_the_closed_entry_is_deleted_reemits_the_same_bytes() -> None:
    records = _stream()
    batches = [records[i : i + 7] for i in range(0, len(records), 7)]
    expected, outs, _ = _run(batches)
    # batch 3 closed a window; its output is out, the tombstone of its entry is not
    crash = next(i for i, o in enumerate(outs) if o.after)
    done, _, table = _run(batches[:crash])
    _, upto, _ = _run(batches[: crash + 1])
    table.update(_saved(upto[crash].state))
    b = stage(grace="2s")
    b.restore(0, {k: v for k, v in table.items() if v is not None})
    again = b.process(0, batches[crash + 1])
    first = {m.key: m.value for m in outs[crash].messages}
    reemitted = [m for m in again.messages if m.key in first]
    assert reemitted and all(first[m.key] == m.value for m in reemitted)
    assert again.counts["reemitted"] == len(first)
    assert set(again.after) >= {(k, None) for k, v in outs[crash].after}
    replay = done + outs[crash].messages + again.messages
    for batch in batches[crash + 2 :]:
        replay.extend(b.process(0, batch).messages)
    assert _final(replay) == _final(expected)


def test_records_for_a_sealed_window_above_its_floor_are_late() -> None:
    a = stage(grace="2s")
    out = a.process(0, [msg(0, 1), msg(1, 12_000)])  # [0, 10 s) closes at 12 s
    state = {k: v for k, v in _saved(out.state) if v is not None}
    state.pop(("o", 0))  # the offset marker did not make it: the watermark is not known
    b = stage(grace="2s")
    b.restore(0, state)
    again = b.process(0, [msg(0, 1), msg(1, 12_000), msg(2, 5)])
    assert emitted(again) == [("k", 0, 1)]  # the stored output, not a rebuilt window
    assert again.counts["late"] == 1 and len(again.dead) == 1
