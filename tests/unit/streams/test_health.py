"""Worker health: a table recovery that crashed or never ends makes the worker loud."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from streams.health import Health


def _health(recovery: Any, timeout: float = 60.0) -> Health:
    app = SimpleNamespace(
        tables=SimpleNamespace(recovery=recovery),
        consumer=SimpleNamespace(assignment=lambda: set(), highwater=lambda tp: -1),
        rebalancing=False,
    )
    return Health(app, [], "p", recovery_timeout=timeout)  # type: ignore[arg-type]


def _recovery(*, in_recovery: bool, crashed: bool = False) -> SimpleNamespace:
    done = SimpleNamespace(is_set=lambda: not in_recovery)
    return SimpleNamespace(
        in_recovery=in_recovery, crashed=crashed, crash_reason="boom", completed=done
    )


def test_recovery_running_past_the_timeout_is_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    health = _health(_recovery(in_recovery=True), timeout=60)
    health.check(now=1000.0)
    assert health.recovery_problem is None
    assert health.healthz()[0] == 200
    with caplog.at_level(logging.ERROR, logger="streams.health"):
        health.check(now=1061.0)
        health.check(now=1070.0)
    assert health.recovery_problem is not None and "after 70 s" in health.recovery_problem
    status, body = health.healthz()
    assert status == 503 and "table recovery" in body["recovery"]
    assert health.readyz() == (503, {"ready": False, "reason": health.recovery_problem})
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # logged once


def test_crashed_recovery_is_a_failure_at_once() -> None:
    health = _health(_recovery(in_recovery=False, crashed=True))
    health.check(now=5.0)
    assert health.recovery_problem == "table recovery crashed: 'boom'"
    assert health.healthz()[0] == 503


def test_finished_recovery_clears_the_clock() -> None:
    recovery = _recovery(in_recovery=True)
    health = _health(recovery, timeout=60)
    health.check(now=0.0)
    recovery.in_recovery = False
    health.check(now=50.0)
    recovery.in_recovery = True
    health.check(now=100.0)  # a new recovery: its own 60 s
    assert health.recovery_problem is None


def test_a_stage_loop_that_raises_makes_the_worker_unhealthy() -> None:
    from streams.app import stage_loop

    health = _health(_recovery(in_recovery=False))

    async def broken() -> None:
        raise RuntimeError("delivery failed")

    with pytest.raises(RuntimeError):
        asyncio.run(stage_loop(broken, "clean", health)())
    assert health.dead == ["clean"]
    assert health.healthz() == (
        503,
        {"status": "unhealthy", "stalled": {}, "dead": ["clean"]},
    )
