"""The worker's stall watchdog: the oldest stalled partition, a blocked event loop, the
crash it asks Faust for (issue #19)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from headrace.errors import WedgedError
from streams.health import Health

TOPIC = "orders.raw"


def _health(highwater: dict[TP, int]) -> tuple[Health, SimpleNamespace]:
    app = SimpleNamespace(
        tables=SimpleNamespace(recovery=None),
        consumer=SimpleNamespace(assignment=lambda: set(highwater), highwater=highwater.get),
        rebalancing=False,
    )
    runner = SimpleNamespace(
        processor=SimpleNamespace(source=TOPIC),
        labels=("p", "clean"),
        position={},
        progress_at={},
    )
    health = Health(app, [runner], "p", stall_after=60)  # type: ignore[arg-type, list-item]
    return health, runner


def test_the_oldest_lagging_partition_is_the_stall() -> None:
    tp0, tp1 = TP(TOPIC, 0), TP(TOPIC, 1)
    health, runner = _health({tp0: 100, tp1: 50})
    runner.position.update({tp0: 9, tp1: 49})  # tp1 caught up
    runner.progress_at.update({tp0: 1000.0, tp1: 900.0})
    health.check(now=1010.0)
    assert health.stall_now is not None
    assert health.stall_now.since == 1000.0
    assert health.stall_now.pending == "orders.raw[0] has lag 90 (stage clean)"
    runner.position[tp0] = 99  # caught up: nothing pending
    health.check(now=1020.0)
    assert health.stall_now is None
    assert health.watch_stall(now=1021.0) is None


def test_a_trailing_transaction_marker_is_no_stall() -> None:
    tp0 = TP(TOPIC, 0)
    health, runner = _health({tp0: 11})
    runner.position[tp0] = 9  # offset 10 is a commit marker nobody processes
    runner.progress_at[tp0] = 0.0
    health.check(now=10_000.0)
    assert health.stall_now is None


def test_a_blocked_event_loop_is_a_stall_of_its_own() -> None:
    health, _runner = _health({})
    health.check(now=1000.0)  # the last round the loop ran
    assert health.watch_stall(now=1014.0) is None  # within 3 x the 5 s interval
    stall = health.watch_stall(now=1100.0)
    assert stall is not None and stall.since == 1000.0
    assert stall.pending == "the event loop has not run for 100 s"


def test_the_watchdog_reason_shows_in_healthz() -> None:
    health, _runner = _health({})
    health._on_watchdog("worker of p: no partition advanced for 61 s while x")
    status, body = health.healthz()
    assert status == 503 and body["reason"].startswith("worker of p: no partition advanced")
    health._on_watchdog(None)
    assert health.healthz()[0] == 200


def test_the_clean_stop_crashes_the_app_on_its_loop() -> None:
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    health, _runner = _health({})
    setattr(health.app, "crash", crash)  # noqa: B010 - a fake app, not a faust.App

    async def main() -> Any:
        health._loop = asyncio.get_running_loop()
        health._crash()  # called from the watchdog thread in a worker
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert len(crashed) == 1 and isinstance(crashed[0], WedgedError)


def test_a_stage_loop_busy_without_finishing_a_batch_is_a_stall() -> None:
    """A hang on the first batch after an assignment leaves no position to measure lag
    from: input waiting (or a batch in flight) and no batch finished is a stall too."""
    health, runner = _health({})
    items: list[int] = []
    buffer = SimpleNamespace(items=items, qsize=lambda: len(items), _idle=asyncio.Event())
    buffer._idle.set()
    runner.topic = SimpleNamespace(buffer=buffer)
    runner.batches = 3
    health.check(now=100.0)
    assert health.stall_now is None  # idle
    buffer._idle.clear()  # a batch taken
    items.extend([1, 2, 3])
    health.check(now=110.0)
    assert health.stall_now is not None and health.stall_now.since == 110.0
    assert health.stall_now.pending == "stage clean has 3 records waiting and a batch in flight"
    runner.batches = 4  # it finished one: progress
    health.check(now=130.0)
    assert health.stall_now is not None and health.stall_now.since == 130.0
    buffer._idle.set()
    items.clear()
    health.check(now=140.0)
    assert health.stall_now is None


def test_no_stall_while_tables_recover() -> None:
    tp0 = TP(TOPIC, 0)
    health, runner = _health({tp0: 100})
    recovery = SimpleNamespace(in_recovery=True, crashed=False)
    setattr(health.app.tables, "recovery", recovery)  # noqa: B010 - a fake app
    runner.position[tp0] = 9
    runner.progress_at[tp0] = 0.0
    health.check(now=1000.0)
    assert health.stall_now is None  # recovery_timeout is the limit there
