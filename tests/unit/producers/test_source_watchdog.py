"""What the source runner tells its watchdog (issue #19): a pass or unacknowledged records
are pending work, a produced batch or a finished pass is progress, waiting for the next poll
is idle."""

from __future__ import annotations

import threading
from typing import Any

from test_producer_runner import FakeProducer, FakeStore, ListSource, _rec, _runner

from producers.batch import Batch


def test_a_pass_blocked_in_the_source_is_pending_then_its_end_is_progress() -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking:
        name = "src"
        unit = "objects"

        def restore(self, state: Any) -> None:
            pass

        def batches(self) -> Any:
            yield Batch([_rec(1)], {"n": 1})
            entered.set()
            release.wait(30)  # a database query that does not return

        def close(self) -> None:
            pass

    source, producer = Blocking(), FakeProducer()
    runner = _runner(source, producer, FakeStore())
    assert runner.stall() is None
    thread = threading.Thread(target=runner.run, kwargs={"once": True, "poll_interval": 0})
    thread.start()
    try:
        assert entered.wait(5)
        stall = runner.stall()
        assert stall is not None
        assert stall.pending == (
            "a pass over the source is running (1 records wait for the broker's acknowledgement)"
        )
        first = stall.since
        assert runner.stall() == stall  # nothing new: the stall still runs from then
        assert first >= runner.watch.last_progress
    finally:
        release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert runner.stall() is None  # the pass ended, everything acknowledged: idle


def test_records_waiting_for_acks_are_pending_between_passes() -> None:
    producer = FakeProducer()
    runner = _runner(ListSource([]), producer, FakeStore())
    producer.queued.append(("t", b"v", b"k", None, 0))
    producer.queued.append(("t", b"v", b"k", None, 0))
    stall = runner.stall()
    assert stall is not None
    assert stall.pending == "2 records wait for the broker's acknowledgement"
    producer.release()
    assert runner.stall() is None
