"""The runner: commit only after write, retries with pause/resume, DLQ routing, stop."""

from __future__ import annotations

from itertools import pairwise

import orjson
import pytest
from fakes import FakeClock, FakeConsumer, FakeProducer, Msg, Part, QuietMetrics, ScriptedWriter

from connectors.backoff import Backoff
from connectors.records import FatalSinkError, WriteOutcome
from connectors.runner import POLL_SLICE, SinkRunner
from headrace.errors import RetriableError


def _msgs(n: int, partitions: int = 2) -> list[Msg]:
    return [
        Msg("t", i % partitions, i // partitions, f"k{i}".encode(), orjson.dumps({"i": i}))
        for i in range(n)
    ]


def _runner(consumer, writer, producer=None, batch_size=10, sleeps=None, clock=None):
    return SinkRunner(
        name="s",
        topic="t",
        consumer=consumer,
        writer=writer,
        producer=producer or FakeProducer(),
        metrics=QuietMetrics(),  # type: ignore[arg-type]
        batch_size=batch_size,
        batch_bytes=10**9,
        linger=0.0,
        backoff=Backoff(0.1, 1.0, rand=lambda a, b: b),
        make_offset=lambda t, p, o: (t, p, o),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        clock=clock or consumer.clock or FakeClock(),
    )


def test_commits_each_partitions_next_offset_after_the_write() -> None:
    consumer, writer = FakeConsumer(_msgs(20)), ScriptedWriter()
    _runner(consumer, writer).run(max_idle_polls=2)
    assert len(writer.stored) == 20
    assert consumer.commits == [[(0, 5), (1, 5)], [(0, 10), (1, 10)]]
    assert consumer.closed


def test_commits_past_a_transaction_marker_after_the_last_record_read() -> None:
    """A topic written in transactions ends each one with a commit marker: once the batch
    holds the last record read from a partition, the commit goes to the consumer's position
    past the marker, or the sink's lag stays at 1 for good."""
    consumer = FakeConsumer(_msgs(6), markers=[(0, 3), (1, 1), (1, 3), (1, 4)])
    _runner(consumer, ScriptedWriter(), batch_size=10).run(max_idle_polls=2)
    assert consumer.commits == [[(0, 4), (1, 5)]]


def test_never_commits_past_a_record_read_but_not_written() -> None:
    """A batch cut short inside one consume (batch_bytes) commits only past its own last
    record, even though the consumer's position is further: the rest is not written yet."""
    consumer = FakeConsumer(_msgs(10, partitions=1), markers=[(0, 10)])
    runner = _runner(consumer, ScriptedWriter(), batch_size=10)
    runner._batch.max_bytes = 20  # two records of 9 bytes per batch
    runner.run(max_idle_polls=2)
    assert [c[0][1] for c in consumer.commits] == [2, 4, 6, 8, 11]


def test_batch_bytes_bounds_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 records of 9 bytes with batch_bytes 20: batches of 2 (a third would pass 20),
    never more bytes than the bound, and each batch committed after its write."""
    consumer, writer = FakeConsumer(_msgs(10)), ScriptedWriter()
    sizes: list[int] = []
    original = writer.write

    def spy(batch):
        sizes.append(sum(r.size for r in batch))
        return original(batch)

    monkeypatch.setattr(writer, "write", spy)
    runner = _runner(consumer, writer, batch_size=10)
    runner._batch.max_bytes = 20
    runner.run(max_idle_polls=2)
    assert len(writer.stored) == 10
    assert sizes == [18] * 5, sizes
    assert len(consumer.commits) == 5


def test_retriable_failure_pauses_backs_off_and_commits_nothing_until_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    consumer = FakeConsumer(_msgs(4), partitions=[0, 1], clock=clock)
    writer, sleeps = ScriptedWriter(failures=3), list[float]()
    runner = _runner(consumer, writer, batch_size=4, sleeps=sleeps)
    original = writer.write
    write_times = []

    def spy(batch):
        write_times.append(clock())
        if writer.failures:
            assert consumer.commits == []  # nothing committed while failing
        return original(batch)

    monkeypatch.setattr(writer, "write", spy)
    runner.run(max_idle_polls=2)
    assert writer.calls == 4
    # exponential (jitter pinned to the top), waited inside consume, never in a plain sleep
    assert [round(b - a, 6) for a, b in pairwise(write_times)] == [0.1, 0.2, 0.4]
    assert sleeps == []
    assert consumer.paused == [[Part("t", 0), Part("t", 1)]]
    assert consumer.resumed == consumer.paused
    assert consumer.commits == [[(0, 2), (1, 2)]]


def test_a_long_backoff_keeps_polling_the_paused_consumer() -> None:
    """A 30 s outage is spent in consume calls of at most POLL_SLICE on paused partitions,
    so the group keeps the member (max.poll.interval.ms) and the batch is written after."""
    clock = FakeClock()
    consumer = FakeConsumer(_msgs(4), partitions=[0, 1], clock=clock)

    class Outage(ScriptedWriter):
        def write(self, batch):
            if clock() < 30.0:
                raise RetriableError("down", retry_after=0.0)
            return super().write(batch)

    writer = Outage()
    runner = SinkRunner(
        name="s",
        topic="t",
        consumer=consumer,
        writer=writer,
        producer=FakeProducer(),
        metrics=QuietMetrics(),  # type: ignore[arg-type]
        batch_size=4,
        batch_bytes=10**9,
        linger=0.0,
        backoff=Backoff(0.1, 8.0, rand=lambda a, b: b),
        make_offset=lambda t, p, o: (t, p, o),
        sleep=lambda s: pytest.fail("slept instead of polling"),
        clock=clock,
    )
    runner.run(max_idle_polls=2)
    during = [(t, paused) for t, paused in consumer.polls if paused]
    assert len(during) > 30 and all(0 < t <= POLL_SLICE for t, _ in during)
    assert all(paused == {0, 1} for _, paused in during)
    assert len(writer.stored) == 4 and consumer.commits == [[(0, 2), (1, 2)]]


def test_revocation_during_the_backoff_gives_up_only_those_partitions_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    consumer = FakeConsumer(_msgs(4), partitions=[0, 1], clock=clock)
    writer = ScriptedWriter(failures=2)
    runner = _runner(consumer, writer, batch_size=4)
    original = consumer.consume

    def consume(num_messages=1, timeout=0):
        if consumer.paused_now() and 1 in {p.partition for p in consumer.assigned}:
            consumer.assigned = [Part("t", 0)]  # cooperative: partition 1 goes, 0 stays
            consumer.callbacks["on_revoke"](consumer, [Part("t", 1)])
        return original(num_messages, timeout)

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run(max_idle_polls=2)
    assert set(writer.stored) == {b"k0", b"k2"}  # partition 0's records only
    assert consumer.commits == [[(0, 2)]]  # nothing committed for the revoked partition
    assert consumer.resumed[-1] == [Part("t", 0)]


def test_a_message_arriving_during_the_backoff_is_kept_for_the_next_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    consumer = FakeConsumer(_msgs(2, partitions=1), partitions=[0], clock=clock)
    writer = ScriptedWriter(failures=1)
    runner = _runner(consumer, writer, batch_size=2)
    original = consumer.consume
    late = Msg("t", 3, 0, b"late", orjson.dumps({"i": 99}))

    def consume(num_messages=1, timeout=0):
        if consumer.paused_now() and late not in consumer.messages and not writer.stored:
            consumer.assigned.append(Part("t", 3))  # assigned during the backoff
            consumer.messages.append(late)
        return original(num_messages, timeout)

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run(max_idle_polls=2)
    assert set(writer.stored) == {b"k0", b"k1", b"late"}
    assert consumer.commits == [[(0, 2)], [(3, 1)]]


def test_backoff_is_capped() -> None:
    b = Backoff(0.1, 2.0, rand=lambda a, b: b)
    assert [b.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert b.delay(0, retry_after=1.5) == 1.5


def test_fatal_error_commits_nothing() -> None:
    class Fatal(ScriptedWriter):
        def write(self, batch):
            raise FatalSinkError("table gone")

    consumer = FakeConsumer(_msgs(4))
    with pytest.raises(FatalSinkError):
        _runner(consumer, Fatal(), batch_size=4).run(max_idle_polls=2)
    assert consumer.commits == [] and consumer.closed


def test_poison_records_go_to_the_dlq_with_reason_and_the_rest_is_committed() -> None:
    msgs = [*_msgs(4, partitions=1), Msg("t", 0, 4, b"bad", b"{nope")]
    consumer, producer = FakeConsumer(msgs), FakeProducer()
    writer = ScriptedWriter(reject={b"k1"})
    _runner(consumer, writer, producer, batch_size=5).run(max_idle_polls=2)
    assert set(writer.stored) == {b"k0", b"k2", b"k3"}
    assert [(s["topic"], s["key"]) for s in producer.sent] == [("t.dlq", b"bad"), ("t.dlq", b"k1")]
    headers = producer.sent[0]["headers"]
    assert headers["headrace.stage"] == b"s"
    assert b"cannot decode" in headers["headrace.error.message"]
    assert orjson.loads(headers["headrace.position"]) == {"topic": "t", "partition": 0, "offset": 4}
    assert producer.sent[1]["value"] == orjson.dumps({"i": 1})  # original bytes kept
    assert consumer.commits == [[(0, 5)]]


def test_stop_flushes_and_commits_the_partial_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer(_msgs(3, partitions=1))
    writer = ScriptedWriter()
    runner = _runner(consumer, writer, batch_size=100)
    runner._batch.linger = 3600  # never due by time
    original = consumer.consume

    def consume(num_messages=1, timeout=0):
        out = original(num_messages, timeout)
        if not out:
            runner.stop()
        return out

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run()
    assert len(writer.stored) == 3 and consumer.commits == [[(0, 3)]]


def test_revocation_flushes_before_the_partitions_go(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer(_msgs(3, partitions=1))
    writer = ScriptedWriter()
    runner = _runner(consumer, writer, batch_size=100)
    runner._batch.linger = 3600
    original = consumer.consume
    state = {"n": 0}

    def consume(num_messages=1, timeout=0):
        state["n"] += 1
        if state["n"] == 2:
            consumer.callbacks["on_revoke"](consumer, [Part("t", 0)])
            assert consumer.commits == [[(0, 3)]]  # written and committed inside the callback
            runner.stop()
        return original(num_messages, timeout)

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run()
    assert len(writer.stored) == 3


def test_lost_partitions_drop_the_batch_uncommitted(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer(_msgs(3, partitions=1))
    writer = ScriptedWriter()
    runner = _runner(consumer, writer, batch_size=100)
    runner._batch.linger = 3600
    original = consumer.consume
    state = {"n": 0}

    def consume(num_messages=1, timeout=0):
        state["n"] += 1
        if state["n"] == 2:
            consumer.callbacks["on_lost"](consumer, [Part("t", 0)])
            runner.stop()
        return original(num_messages, timeout)

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run()
    assert writer.stored == {} and consumer.commits == []


def test_empty_outcome_is_fine() -> None:
    assert WriteOutcome().rejected == {}


def test_open_waits_for_the_destination() -> None:
    class LateOpen(ScriptedWriter):
        opens = 0

        def open(self) -> None:
            self.opens += 1
            if self.opens < 3:
                raise RetriableError("not up yet", retry_after=0.0)

    consumer, writer, sleeps = FakeConsumer(_msgs(2)), LateOpen(), list[float]()
    _runner(consumer, writer, batch_size=2, sleeps=sleeps).run(max_idle_polls=2)
    assert writer.opens == 3 and sleeps == [0.1, 0.2] and len(writer.stored) == 2


def test_stop_while_the_destination_is_down_commits_nothing_and_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(_msgs(2), clock=FakeClock())
    writer = ScriptedWriter(failures=10**6)
    runner = _runner(consumer, writer, batch_size=2)
    original = consumer.consume

    def consume(num_messages=1, timeout=0):
        if consumer.paused_now():
            runner.stop()  # SIGTERM arrives during the backoff
        return original(num_messages, timeout)

    monkeypatch.setattr(consumer, "consume", consume)
    runner.run()
    assert consumer.commits == [] and writer.stored == {} and consumer.closed


def test_decode_value_json_tombstone_and_framed_avro() -> None:
    from schemas import RecordCodec

    decode_value = RecordCodec().decode_value

    assert decode_value(b'{"a": 1.5}') == {"a": 1.5}
    assert decode_value(None) is None
    with pytest.raises(ValueError, match="schema id 7"):
        decode_value(b"\x00\x00\x00\x00\x07abc")
    with pytest.raises(ValueError):
        decode_value(b"[1, 2]")


def test_a_commit_that_never_returns_ends_the_runner_instead_of_wedging_it() -> None:
    """Issue #19's finding: during a broker outage the synchronous commit blocked for over ten
    minutes while the sink reported healthy. Past commit_timeout the runner raises
    WedgedError (the process exits 1, the supervisor restarts it) and does not touch the
    wedged consumer again (close() would block too)."""
    import threading
    import time

    from headrace.errors import WedgedError

    release = threading.Event()

    class StuckConsumer(FakeConsumer):
        def commit(self, *, offsets, asynchronous):
            release.wait(30)

    consumer, writer = StuckConsumer(_msgs(4)), ScriptedWriter()
    runner = _runner(consumer, writer)
    runner._commit_timeout = 0.2
    started = time.monotonic()
    try:
        with pytest.raises(WedgedError, match=r"has not returned in 0\.2s"):
            runner.run(max_idle_polls=2)
    finally:
        release.set()
    assert time.monotonic() - started < 10
    assert len(writer.stored) == 4  # written before the commit: a restart writes it again
    assert not consumer.closed


def test_a_commit_that_fails_is_logged_and_replayed_later() -> None:
    class FailingConsumer(FakeConsumer):
        def commit(self, *, offsets, asynchronous):
            raise RuntimeError("coordinator not available")

    consumer, writer = FailingConsumer(_msgs(4)), ScriptedWriter()
    runner = _runner(consumer, writer)
    runner.run(max_idle_polls=2)
    assert len(writer.stored) == 4 and runner.committed == {} and consumer.closed
