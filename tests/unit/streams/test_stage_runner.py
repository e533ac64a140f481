"""StageRunner's loop with a fake producer and consumer: a stateless stage processes batch N+1
while N is being acknowledged, but produces N+1 and acks N's offsets only after N's outputs
are acknowledged; a failed delivery stops the loop with nothing acked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from headrace.config import Stage
from headrace.errors import DeliveryError
from streams.batch_topic import BatchBuffer
from streams.runner import StageRunner
from streams.stages.base import BatchOutput, InMessage
from streams.stages.records import RecordsStage


@dataclass
class Record:
    """The fields of an aiokafka ``ConsumerRecord`` the runner reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def add(self, *event: Any) -> None:
        with self.lock:
            self.items.append(event)

    def index(self, *event: Any) -> int:
        return self.items.index(event)


class FakeProducer:
    """Queues messages; ``flush`` (run in a thread by the runner) takes ``ack_s`` to
    "acknowledge" them and reports a delivery error for values in ``failing``."""

    def __init__(self, events: Events, ack_s: float, failing: frozenset[bytes]) -> None:
        self.events = events
        self.ack_s = ack_s
        self.failing = failing
        self.queued: list[tuple[bytes, Callable[[Any, Any], None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes, **kwargs: Any) -> None:
        self.events.add("produce", orjson.loads(value)["i"])
        self.queued.append((value, kwargs["on_delivery"]))

    def flush(self, timeout: float) -> int:
        time.sleep(self.ack_s)
        queued, self.queued = self.queued, []
        for value, callback in queued:
            if value in self.failing:
                callback("broker said no", None)
        self.events.add("acknowledged", *sorted(orjson.loads(v)["i"] for v, _ in queued))
        return 0

    def poll(self, timeout: float) -> int:
        return 0


class FakeConsumer:
    def __init__(self, events: Events) -> None:
        self.events = events

    def ack_offsets(self, tp: Any, offsets: list[int]) -> int:
        self.events.add("ack", tp.partition, *offsets)
        return len(offsets)

    def highwater(self, tp: Any) -> int:
        raise KeyError(tp)


class Recording(RecordsStage):
    def __init__(self, events: Events) -> None:
        spec = Stage.model_validate({"from": "in", "to": "out", "transform": [{"filter": "true"}]})
        super().__init__("s", spec)
        self.events = events

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        self.events.add("process", *[m.offset for m in batch])
        return super().process(partition, batch, wall_ms)


@dataclass
class Setup:
    runner: StageRunner
    buffer: BatchBuffer
    events: Events


def setup(ack_s: float = 0.3, failing: frozenset[bytes] = frozenset()) -> Setup:
    events = Events()
    buffer = BatchBuffer(maxsize=100, batch_size=2)
    app = type("App", (), {"consumer": FakeConsumer(events)})()
    topic = type("Topic", (), {"buffer": buffer})()
    runner = StageRunner(
        app=app,
        processor=Recording(events),
        topic=topic,
        table=None,
        producer=FakeProducer(events, ack_s, failing),  # type: ignore[arg-type]
        labels=("p", "s"),
        within=0.05,
    )
    return Setup(runner, buffer, events)


def records(*offsets: int) -> list[Record]:
    return [Record("in", 0, o, b"k", orjson.dumps({"i": o}), 1_000 + o) for o in offsets]


async def feed(s: Setup, *batches: tuple[int, ...]) -> None:
    """Put each batch in the buffer once the loop has taken the one before."""
    for offsets in batches:
        await s.buffer.put_many(records(*offsets), lambda: True)
        while ("process", *offsets) not in s.events.items:
            await asyncio.sleep(0.005)


async def run_until(s: Setup, done: Callable[[], bool], timeout: float = 10.0) -> None:
    task = asyncio.ensure_future(s.runner.run())
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_next_batch_is_processed_during_the_acknowledgement_but_produced_after() -> None:
    async def scenario() -> Events:
        s = setup()
        assert s.runner.overlaps
        feeder = asyncio.ensure_future(feed(s, (0, 1), (2, 3), (4, 5)))
        await run_until(s, lambda: ("ack", 0, 4, 5) in s.events.items)
        await feeder
        return s.events

    events = asyncio.run(scenario())
    e = events.index
    # batch 2 is processed while batch 1 waits for the broker
    assert e("process", 2, 3) < e("acknowledged", 0, 1)
    # ... but produced, and batch 1 acked, only after batch 1's acknowledgement
    assert e("acknowledged", 0, 1) < e("ack", 0, 0, 1) < e("produce", 2)
    assert e("acknowledged", 2, 3) < e("ack", 0, 2, 3) < e("produce", 4)
    assert e("acknowledged", 4, 5) < e("ack", 0, 4, 5)
    produced = [ev[1] for ev in events.items if ev[0] == "produce"]
    assert produced == [0, 1, 2, 3, 4, 5]  # in offset order


def test_a_failed_delivery_stops_the_loop_and_acks_nothing_of_the_batch() -> None:
    async def scenario() -> tuple[Events, BaseException | None]:
        s = setup(ack_s=0.05, failing=frozenset({orjson.dumps({"i": 3})}))
        feeder = asyncio.ensure_future(feed(s, (0, 1), (2, 3), (4, 5)))
        try:
            await asyncio.wait_for(s.runner.run(), timeout=10)
        except DeliveryError as exc:
            feeder.cancel()
            assert await s.buffer.idle(0.1), "a dead loop leaves the buffer idle"
            return s.events, exc
        return s.events, None

    events, error = asyncio.run(scenario())
    assert isinstance(error, DeliveryError) and "broker said no" in str(error)
    acks = [ev for ev in events.items if ev[0] == "ack"]
    assert acks == [("ack", 0, 0, 1)]
    assert ("produce", 4) not in events.items  # nothing produced past the failed batch


def test_buffer_is_busy_until_the_overlapped_batch_is_acked() -> None:
    """What a rebalance or SIGTERM waits for (``BatchConsumer.wait_empty``): no batch in
    flight, including one produced and still waiting for the broker."""

    async def scenario() -> tuple[bool, bool, Events]:
        s = setup(ack_s=0.5)
        task = asyncio.ensure_future(s.runner.run())
        await s.buffer.put_many(records(0, 1), lambda: True)
        while ("produce", 1) not in s.events.items:
            await asyncio.sleep(0.005)
        busy_while_acking = not await s.buffer.idle(0.1)
        s.buffer.clear()  # as wait_empty does
        idle_after = await s.buffer.idle(5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return busy_while_acking, idle_after, s.events

    busy, idle, events = asyncio.run(scenario())
    assert busy and idle
    assert ("ack", 0, 0, 1) in events.items
