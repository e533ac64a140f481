"""What the sink runner tells its watchdog and its fault tracker (issue #19)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson
from fakes import FakeClock, FakeConsumer, FakeProducer, Msg, QuietMetrics, ScriptedWriter
from prometheus_client import REGISTRY

from connectors.backoff import Backoff
from connectors.records import SinkRecord, WriteOutcome
from connectors.runner import SinkRunner
from headrace import faults
from headrace.errors import RetriableError


def _msgs(n: int, partitions: int = 2) -> list[Msg]:
    return [
        Msg("t", i % partitions, i // partitions, f"k{i}".encode(), orjson.dumps({"i": i}))
        for i in range(n)
    ]


def _runner(consumer: FakeConsumer, writer: object) -> SinkRunner:
    return SinkRunner(
        name="s",
        topic="t",
        consumer=consumer,
        writer=writer,  # type: ignore[arg-type]
        producer=FakeProducer(),
        metrics=QuietMetrics(),  # type: ignore[arg-type]
        batch_size=10,
        batch_bytes=10**9,
        linger=0.0,
        backoff=Backoff(0.1, 1.0, rand=lambda a, b: b),
        make_offset=lambda t, p, o: (t, p, o),
        sleep=lambda s: None,
        clock=consumer.clock or FakeClock(),
    )


class _BlockingWriter(ScriptedWriter):
    """A write that does not return until released (a database that never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        self.entered.set()
        self.release.wait(30)
        return super().write(batch)


def test_a_blocked_write_is_pending_work_then_a_commit_is_progress() -> None:
    consumer, writer = FakeConsumer(_msgs(4)), _BlockingWriter()
    runner = _runner(consumer, writer)
    assert runner.stall() is None  # nothing read yet: idle
    thread = threading.Thread(target=runner.run, kwargs={"max_idle_polls": 2}, daemon=True)
    thread.start()
    try:
        assert writer.entered.wait(5)
        stall = runner.stall()
        assert stall is not None
        assert stall.pending == "4 records are pending on t[0,1]"
        assert stall.since >= runner.progress.last_progress
    finally:
        writer.release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert runner.stall() is None  # committed, nothing in hand


def test_retried_writes_are_faults_recovered_from() -> None:
    tracker = faults.install(faults.FaultTracker("p", "sink/watchdog-test"))
    try:

        class Throttled(ScriptedWriter):
            def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
                self.calls += 1
                if self.calls <= 2:
                    raise RetriableError("sink 's': DynamoDB throttled (x)", retry_after=0.0)
                return super().write(batch)

        consumer, writer = FakeConsumer(_msgs(3), clock=FakeClock()), Throttled()
        _runner(consumer, writer).run(max_idle_polls=2)
        labels = {"pipeline": "p", "process": "sink/watchdog-test", "fault": "throttled"}
        assert REGISTRY.get_sample_value("headrace_fault_recoveries_total", labels) == 1
        assert tracker.open == {}
        down = {**labels, "fault": "database_unavailable"}
        consumer, plain = FakeConsumer(_msgs(3), clock=FakeClock()), ScriptedWriter(failures=1)
        _runner(consumer, plain).run(max_idle_polls=2)
        assert REGISTRY.get_sample_value("headrace_fault_recoveries_total", down) == 1
    finally:
        faults._current = None
