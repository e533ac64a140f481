"""``watchdog:``: when a process that makes no progress while work is pending is unhealthy,
and when it exits so that its supervisor restarts it (``headrace.watchdog``).

One section for every process kind: a source (no batch produced or acknowledged while a pass
is running or deliveries are outstanding), the worker (a partition with lag that does not
advance, or an event loop that stopped running its health check) and a sink (no batch
committed while a batch is in hand). ``unhealthy_after`` is also the worker's stall timeout
(``headrace worker --stall-after`` overrides it for that worker).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from headrace.config.base import ConfigModel, problem
from headrace.config.durations import Duration

__all__ = ["WatchdogConfig"]


class WatchdogConfig(ConfigModel):
    """The stall watchdog of every headrace process (see docs/operations.md, Watchdog)."""

    unhealthy_after: Duration = Field(
        default=60.0,
        description=(
            "A process that makes no progress for this long while work is pending reports "
            "unhealthy (headrace_healthy 0, the reason in /healthz and the log); it is healthy "
            "again as soon as it progresses. Also the worker's stall timeout."
        ),
    )
    exit_after: Duration = Field(
        default=300.0,
        description=(
            "A process that makes no progress for this long while work is pending exits with "
            "code 1 and a one-line reason naming what was stuck, so its supervisor (headrace "
            "run, systemd, Kubernetes) restarts it; 0 turns the exit off (it only reports)."
        ),
    )
    grace: Duration = Field(
        default=10.0,
        description=(
            "How long the watchdog waits for a clean stop before it ends the process "
            "at once (a call that never returns blocks a clean stop)."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> WatchdogConfig:
        if self.unhealthy_after <= 0:
            raise problem("must be more than 0 s", "unhealthy_after")
        if self.exit_after and self.exit_after <= self.unhealthy_after:
            raise problem(
                f"{self.exit_after:g} s is not longer than unhealthy_after "
                f"({self.unhealthy_after:g} s): a process would exit before it reported "
                "unhealthy; make it longer, or 0 to turn the exit off",
                "exit_after",
            )
        return self
