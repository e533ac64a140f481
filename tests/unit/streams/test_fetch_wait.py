"""The worker's aiokafka consumer holds an empty fetch for FETCH_MAX_WAIT_MS, not Faust's 1.5 s,
and reads committed transactions only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiokafka

from streams.consumer import FETCH_MAX_WAIT_MS, BatchApp, BatchConsumerThread


def test_worker_consumer_holds_empty_fetches_briefly(tmp_path: Path) -> None:
    async def create() -> tuple[int, str]:
        app = BatchApp(
            "fetch-wait-test", broker="kafka://127.0.0.1:1", store="memory://", datadir=tmp_path
        )
        thread = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, BatchConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms), str(consumer._isolation_level)
        finally:
            await consumer.stop()

    wait_ms, isolation = asyncio.run(create())
    assert wait_ms == FETCH_MAX_WAIT_MS
    assert isolation == "read_committed"  # an exactly-once source's aborted copies stay unseen
    assert FETCH_MAX_WAIT_MS <= 200  # one idle partition must not hold the others for long


def test_the_overridden_attribute_is_where_aiokafka_keeps_the_fetch_wait() -> None:
    """The overrides write private attributes: they must still be the ones aiokafka's
    constructor sets from ``fetch_max_wait_ms`` and ``isolation_level`` (and its fetcher
    reads at start)."""

    async def create() -> tuple[int, str]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers="127.0.0.1:1",
            fetch_max_wait_ms=1234,
            isolation_level="read_committed",
        )
        try:
            return int(consumer._fetch_max_wait_ms), str(consumer._isolation_level)
        finally:
            await consumer.stop()

    assert asyncio.run(create()) == (1234, "read_committed")
