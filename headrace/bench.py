"""The shape of a benchmark figure, shared by ``headrace bench`` and every stage's benchmark.

A figure compares our code with its raw baseline measured in the same run on the same data,
as records/s and a ratio (ours / baseline). Never a pass/fail assertion: the numbers are
reported (JSON lines and a Markdown table), and targets are read from them by people.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BenchFigure", "peak_rss_mb", "timed"]


@dataclass(frozen=True)
class BenchFigure:
    """One line of ``headrace bench --json``."""

    name: str
    records: int
    ours_per_s: float
    baseline: str
    baseline_per_s: float
    peak_rss_mb: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours_per_s / self.baseline_per_s if self.baseline_per_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = round(self.ratio, 3)
        data["ours_per_s"] = round(self.ours_per_s, 1)
        data["baseline_per_s"] = round(self.baseline_per_s, 1)
        for key in ("p50_ms", "p99_ms", "note"):
            if data[key] in (None, ""):
                del data[key]
        return data

    def json_line(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its waited-for children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run ``fn`` (which returns a record count); return (count, records per second)."""
    start = time.perf_counter()
    count = fn()
    elapsed = time.perf_counter() - start
    return count, (count / elapsed if elapsed > 0 else 0.0)
