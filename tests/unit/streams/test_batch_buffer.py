"""BatchBuffer: the batch hand-off between Faust's fetcher and a stage loop."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from streams.batch_topic import BatchBuffer
from streams.consumer import BatchConsumer


def _valid() -> bool:
    return True


def test_take_hands_out_everything_and_is_busy_until_done() -> None:
    async def run() -> None:
        buf = BatchBuffer(maxsize=100, batch_size=3)
        assert await buf.put_many([1, 2], _valid)
        assert await buf.put_many([3, 4], _valid)
        assert await buf.take(0.01) == [1, 2, 3, 4]
        assert not await buf.idle(0.01)  # the batch is in flight
        buf.done()
        assert await buf.idle(0.01)
        assert await buf.take(0.01) == []  # nothing within the wait

    asyncio.run(run())


def test_put_blocks_while_full_and_drops_when_no_longer_valid() -> None:
    async def run() -> None:
        buf = BatchBuffer(maxsize=2, batch_size=2)
        assert await buf.put_many([1, 2], _valid)
        generation = {"n": 1}
        pending = asyncio.create_task(buf.put_many([3], lambda: generation["n"] == 1))
        await asyncio.sleep(0.01)
        assert not pending.done()  # backpressure: waits for room
        generation["n"] = 2  # a rebalance started meanwhile
        assert buf.clear() == 2
        assert await pending is False
        assert buf.qsize() == 0

    asyncio.run(run())


def test_close_stops_handing_out_batches() -> None:
    async def run() -> None:
        buf = BatchBuffer(maxsize=10, batch_size=5)
        await buf.put_many([1], _valid)
        buf.close()
        assert await buf.take(0.01) == []
        assert not await buf.put_many([2], _valid)

    asyncio.run(run())


def _consumer(readers: int, committed: int | None = None) -> SimpleNamespace:
    """The state ``BatchConsumer.ack_offsets`` works on, for topic ``t``."""
    buffers = {"t": [BatchBuffer(10, 10) for _ in range(readers)]}
    return SimpleNamespace(
        _buffers=lambda: buffers,
        _fanout_acks={},
        _committed_offset=defaultdict(lambda: None, {TP("t", 0): committed}),
        _acked_index=defaultdict(set),
        _acked=defaultdict(list),
        _n_acked=0,
        _waiting_for_ack=None,
    )


def test_ack_offsets_marks_new_offsets_at_or_after_the_committed_one() -> None:
    tp = TP("t", 0)
    fake = _consumer(1, committed=10)
    assert BatchConsumer.ack_offsets(fake, tp, [8, 10, 11, 12]) == 3  # type: ignore[arg-type]
    assert BatchConsumer.ack_offsets(fake, tp, [12, 13]) == 1  # type: ignore[arg-type]
    assert fake._acked[tp] == [10, 11, 12, 13]
    assert fake._n_acked == 4


def test_an_offset_read_by_two_stages_is_acked_once_both_acked_it() -> None:
    tp = TP("t", 0)
    fake = _consumer(2)
    assert BatchConsumer.ack_offsets(fake, tp, [0, 1, 2]) == 0  # type: ignore[arg-type]
    assert fake._acked[tp] == []
    assert BatchConsumer.ack_offsets(fake, tp, [0, 1]) == 2  # type: ignore[arg-type]
    assert fake._acked[tp] == [0, 1]
    assert fake._fanout_acks[tp] == {2: 1}  # still waiting for the second reader
