"""A serving gateway process freezes what it built before serving out of the garbage
collector's sight and collects young objects less often (``gateway.server._freeze_heap``)."""

from __future__ import annotations

import gc
from typing import Any, cast

from gateway.server import GC_THRESHOLD, _freeze_heap


class FakeConfig:
    def __init__(self) -> None:
        self.loaded = False

    def load(self) -> None:
        self.loaded = True


class FakeServer:
    def __init__(self) -> None:
        self.config = FakeConfig()


def test_the_heap_built_before_serving_is_frozen_and_thresholds_set() -> None:
    threshold = gc.get_threshold()
    server = FakeServer()
    built = [{"schema": i} for i in range(1000)]  # something built before serving
    try:
        _freeze_heap(cast(Any, server))
        assert server.config.loaded  # uvicorn's imports happen before the freeze
        assert gc.get_freeze_count() >= len(built)
        assert gc.get_threshold() == GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
