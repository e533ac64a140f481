"""AggregateStage on messages: replay skip, restore, DLQ with lateness, idle timer, kill -9
(with an output topic in memory: a kill -9 never emits a window twice, nor loses one)."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
from fixtures.values import present

from headrace.config import Stage
from streams.output_log import partition_for
from streams.stages.aggregate import AggregateStage
from streams.stages.base import InMessage, OutMessage


class FakeOutputLog:
    """The output topic in memory: ``produce`` appends what the broker acknowledged;
    ``reads`` records each read-back as (partition, start, end)."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = partitions
        self.log: dict[int, list[tuple[bytes | None, bytes | None]]] = {
            p: [] for p in range(partitions)
        }
        self.reads: list[tuple[int, int, int]] = []

    def partition(self, key: bytes) -> int:
        return partition_for(key, self.partitions)

    def start(self, partition: int) -> int:
        return len(self.log[partition])

    def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
        self.reads.append((partition, start, len(self.log[partition])))
        return set(self.log[partition][start:])

    def produce(self, messages: list[OutMessage]) -> None:
        for m in messages:
            assert m.partition is not None, "outputs carry their partition"
            self.log[m.partition].append((m.key, m.value))


def stage(log: FakeOutputLog | None = None, **window: Any) -> AggregateStage:
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
    return AggregateStage("agg", spec, output=log or FakeOutputLog(), idle_ms=1000)


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
    where = partition_for(present(message.key), 3)
    assert message.partition == where  # explicit: it lands where the entry says
    stored = (message.key, message.value, message.timestamp_ms, where, 0)
    assert (("w", 0, ("k",), 0), ("closed", stored, 1)) in out.state  # kept until out
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


def test_a_gated_idle_timer_waits_for_the_input_to_be_complete() -> None:
    """An upstream stall (a paused database under a backfill) must not close the open window
    early: with a gate (``headrace run --until-idle``) the timer runs only once the input is
    complete, and the records after the stall still count (the chaos suite's finding)."""
    done = [False]
    a = stage()
    a.idle_gate = lambda: done[0]
    a.process(0, [msg(0, 1)], wall_ms=100_000)
    assert a.tick(130_000, frozenset({0})).messages == []  # 30 s stall: gate shut, still open
    out = a.process(0, [msg(1, 5_000)], wall_ms=130_001)  # the rest of the window comes
    assert emitted(out) == []
    done[0] = True  # every source finished, every lag 0
    assert emitted(a.tick(140_002, frozenset({0}))) == [("k", 0, 2)]
    ungated = stage()
    ungated.process(0, [msg(0, 1)], wall_ms=100_000)
    assert emitted(ungated.tick(130_000, frozenset({0}))) == [("k", 0, 1)]  # closed early
    late = ungated.process(0, [msg(1, 5_000)], wall_ms=130_001)
    assert late.counts["late"] == 1  # the record after the stall is lost to the window


def test_idle_timer_closes_windows_of_a_restored_partition_that_gets_only_replays() -> None:
    # a worker killed after reading its partition to the end restarts with open windows and
    # gets back only records it had applied: the clock must still close them
    a = stage()
    out = a.process(0, [msg(0, 1)], wall_ms=100_000)
    b = stage()
    b.restore(0, {k: v for k, v in out.state})
    out = b.process(0, [msg(0, 1)], wall_ms=200_000)  # the replay: skipped
    assert out.counts["skipped_replayed"] == 1
    assert b.tick(220_000, frozenset()).messages == []  # has lag: never by clock
    assert b.tick(200_500, frozenset({0})).messages == []  # not idle long enough
    out = b.tick(210_000, frozenset({0}))  # watermark 1 + 10_000 >= 10_000
    assert emitted(out) == [("k", 0, 1)]
    assert b.tick(230_000, frozenset({0})).messages == []  # emitted once


def test_records_below_the_watermark_keep_the_idle_timer_from_closing() -> None:
    # records still arriving, out of order (below the watermark, within the window): not idle
    a = stage()
    a.process(0, [msg(0, 9_000)], wall_ms=100_000)
    a.process(0, [msg(1, 500)], wall_ms=104_000)  # the watermark does not move
    assert a.tick(104_500, frozenset({0})).messages == []  # 0.5 s since the last record
    out = a.tick(105_001, frozenset({0}))  # 1 s idle: 9_000 + 1_001 >= 10_000
    assert emitted(out) == [("k", 0, 2)]


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


def test_upstream_positions_stored_as_text_by_an_older_version_still_skip_duplicates() -> None:
    a = stage()
    state = {k: v for k, v in a.process(0, [msg(0, 1)]).state}
    offset, watermark, _sources = state[("o", 0)]
    state[("o", 0)] = (offset, watermark, {"up|2": (11, 0)})  # keys were text before 2026-12
    b = stage()
    b.restore(0, state)
    replay = InMessage(
        "in", 0, 1, b"k", orjson.dumps({"c": "k"}), 1, (("headrace.source", b"up|2|11|0"),)
    )
    out = b.process(0, [replay])
    assert out.counts["skipped_duplicate"] == 1


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


def _run(
    batches: list[list[InMessage]], log: FakeOutputLog | None = None
) -> tuple[list[Any], list[Any], dict[Any, Any]]:
    """(outputs, batch outputs, state) of a run without a crash; outputs go to ``log``."""
    a = stage(log, grace="2s")
    table: dict[Any, Any] = {}
    messages: list[Any] = []
    outs: list[Any] = []
    for batch in batches:
        out = a.process(0, batch)
        outs.append(out)
        table.update(_saved(out.state))
        messages.extend(out.messages)
        a.output.produce(out.messages)  # type: ignore[attr-defined]
        for key, value in out.after:
            table.pop(key, None) if value is None else table.update({key: value})
    return messages, outs, table


def _once(messages: list[Any]) -> dict[bytes, bytes]:
    """Per key: the one message it was emitted with (fails on a key emitted twice)."""
    seen: dict[bytes, bytes] = {}
    for m in messages:
        assert m.key not in seen, f"{m.key!r} emitted twice"
        seen[m.key] = m.value
    return seen


def _replay(b: AggregateStage, batches: list[list[InMessage]]) -> list[Any]:
    """``b`` (restored) processes ``batches``, its outputs acknowledged after each."""
    got = []
    for batch in batches:
        out = b.process(0, batch)
        b.output.produce(out.messages)  # type: ignore[attr-defined]
        got.extend(out.messages)
    return got


def test_a_kill_after_any_prefix_of_a_batchs_state_emits_every_window_once() -> None:
    records = _stream()
    batches = [records[i : i + 7] for i in range(0, len(records), 7)]
    expected, _, _ = _run(batches)
    want = _once(expected)
    for crash in range(len(batches)):
        # batches before ``crash`` fully done and committed; ``crash`` dies after persisting
        # ``cut`` of its state writes: its outputs were not produced (state goes first)
        probe = stage(grace="2s")
        for earlier in batches[:crash]:
            probe.process(0, earlier)
        writes = _saved(probe.process(0, batches[crash]).state)
        for cut in range(len(writes) + 1):
            log = FakeOutputLog()
            done, _, table = _run(batches[:crash], log)
            state = dict(_saved([*table.items(), *writes[:cut]]))
            state = {k: v for k, v in state.items() if v is not None}
            b = stage(log, grace="2s")
            b.restore(0, state)
            replay = _replay(b, batches[crash:])  # from the committed offset on
            assert _once(done + replay) == want, (crash, cut)


def test_a_kill_after_any_prefix_of_a_batchs_outputs_emits_every_window_once() -> None:
    records = _stream()
    batches = [records[i : i + 7] for i in range(0, len(records), 7)]
    expected, outs, _ = _run(batches)
    want = _once(expected)
    closing = [i for i, o in enumerate(outs) if o.after]
    assert len(closing) >= 3
    for crash in closing:
        # the batch's state is in the changelog, ``landed`` of its outputs reached the broker
        # (the producer is idempotent: a prefix), the tombstones of its entries did not
        first = outs[crash].messages
        for landed in range(len(first) + 1):
            log = FakeOutputLog()
            done, _, table = _run(batches[:crash], log)
            before = {p: len(rows) for p, rows in log.log.items()}
            _, upto, _ = _run(batches[: crash + 1])
            table.update(_saved(upto[crash].state))
            log.produce(first[:landed])
            b = stage(log, grace="2s")
            b.restore(0, {k: v for k, v in table.items() if v is not None})
            again = b.process(0, batches[crash + 1] if crash + 1 < len(batches) else [])
            log.produce(again.messages)
            assert again.counts["already_out"] == landed
            assert again.counts["reemitted"] == len(first) - landed
            assert set(again.after) >= {(k, None) for k, v in outs[crash].after}
            # read back from where the closing batch's outputs started, not from the start
            assert log.reads and all(start == before[p] for p, start, _ in log.reads)
            replay = done + first[:landed] + again.messages + _replay(b, batches[crash + 2 :])
            assert _once(replay) == want, (crash, landed)


def test_a_closed_entry_without_its_output_position_is_produced_again() -> None:
    # written by a version that stored (key, value, timestamp) only: at least once
    a = stage(grace="2s")
    out = a.process(0, [msg(0, 1), msg(1, 12_000)])
    a.output.produce(out.messages)  # type: ignore[attr-defined]
    state = {k: v for k, v in _saved(out.state) if v is not None}
    key = ("w", 0, ("k",), 0)
    kind, stored, offset = state[key]
    state[key] = (kind, stored[:3], offset)
    b = stage(a.output, grace="2s")  # type: ignore[arg-type]
    b.restore(0, state)
    again = b.process(0, [])
    assert [(m.key, m.value, m.partition) for m in again.messages] == [(stored[0], stored[1], None)]
    assert again.counts["reemitted"] == 1 and not b.output.reads  # type: ignore[attr-defined]


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


def test_a_replay_two_records_stages_upstream_is_dropped() -> None:
    """t1 -> t2 -> aggregate: t1's replay after a crash re-sends outputs at new offsets of
    its topic; t2 passes them on as new records, but with t1's position in the header, so
    the aggregate drops them (before, t2 named its own input offsets and they counted twice)."""
    from headrace.config import Stage as StageSpec
    from streams.stages.records import RecordsStage

    step = {"transform": [{"set": {"seen": "true"}}]}
    t1 = RecordsStage("t1", StageSpec.model_validate({"from": "in", "to": "mid", **step}))
    t2 = RecordsStage("t2", StageSpec.model_validate({"from": "mid", "to": "out", **step}))
    a = stage()
    value = orjson.dumps({"c": "k"})
    source_in = [InMessage("in", 0, o, b"k", value, 1) for o in range(3)]
    first = t1.process(0, source_in)  # t1's outputs: mid[0] offsets 0..2
    # t1 crashed before committing; on restart it processes in[0] 1..2 again: mid[0] 3..4
    replay = t1.process(0, source_in[1:])
    mid = [
        InMessage("mid", 0, o, m.key, m.value, 1, tuple(m.headers))
        for o, m in enumerate(first.messages + replay.messages)
    ]
    through = t2.process(0, mid)
    out = [
        InMessage("out", 0, o, m.key, m.value, 1, tuple(m.headers))
        for o, m in enumerate(through.messages)
    ]
    result = a.process(0, out)
    assert result.counts["skipped_duplicate"] == 2
    assert a.parts[0].agg.windows[(("k",), 0)][0] == [3]
