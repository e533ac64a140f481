"""Progress of a running source: a one-line bar on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from producers.runner import Progress

__all__ = ["ProgressDisplay"]

log = logging.getLogger(__name__)


class ProgressDisplay:
    """Callable given to the runner: ``display(progress)``; rate-limited, cheap to call."""

    def __init__(
        self, name: str, unit: str, stream: TextIO | None = None, log_every: float = 15.0
    ) -> None:
        self.name = name
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.5 if self.tty else log_every
        self._next = time.monotonic() + self.every

    def line(self, p: Progress) -> str:
        elapsed = max(time.monotonic() - p.started, 1e-9)
        units = f"{p.units:,} {self.unit}, " if self.unit != "rows" else ""
        return (
            f"{self.name}: {units}{p.records:,} records ({p.records / elapsed:,.0f}/s), "
            f"{p.dead_letters:,} dead letters, {p.checkpoints:,} checkpoints"
        )

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(p))
            self.stream.flush()
        else:
            log.info("%s", self.line(p))

    def done(self, p: Progress) -> None:
        """The final line (ends the bar on a terminal)."""
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(self.line(p) + "\n")
        self.stream.flush()
