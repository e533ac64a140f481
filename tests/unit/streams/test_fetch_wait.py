"""The worker's aiokafka consumer holds an empty fetch for FETCH_MAX_WAIT_MS, not Faust's 1.5 s."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.consumer import FETCH_MAX_WAIT_MS, BatchApp, BatchConsumerThread


def test_worker_consumer_holds_empty_fetches_briefly(tmp_path: Path) -> None:
    async def create() -> int:
        app = BatchApp(
            "fetch-wait-test", broker="kafka://127.0.0.1:1", store="memory://", datadir=tmp_path
        )
        thread = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, BatchConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    wait_ms = asyncio.run(create())
    assert wait_ms == FETCH_MAX_WAIT_MS
    assert FETCH_MAX_WAIT_MS <= 200  # one idle partition must not hold the others for long
