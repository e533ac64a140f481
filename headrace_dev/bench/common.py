"""The shape of a benchmark figure, shared by ``headrace bench`` and every stage's benchmark.

A figure compares our code with its raw baseline measured in the same run on the same data,
as records/s and a ratio (ours / baseline). Never a pass/fail assertion: the numbers are
reported (JSON lines and a Markdown table), and targets are read from them by people.
"""

from __future__ import annotations

import json
import re
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BenchFigure",
    "delete_run_topics",
    "peak_rss_mb",
    "process_peak_rss_mb",
    "reset_peak_rss",
    "timed",
]


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchFigure:
        """The figure of one ``--json`` line (``ratio`` is derived, so it is dropped)."""
        fields = {k: v for k, v in data.items() if k != "ratio"}
        return cls(**fields)

    def json_line(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=False)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process since the previous call, in MiB.

    Each figure calls it once when it is done, so the figure reports its own peak, not the
    largest of every figure before it in the same ``headrace bench`` run: on Linux the peak
    (VmHWM) is read and then reset to the current RSS (``/proc/self/clear_refs``). Where that
    is not possible, the lifetime peak. ``children=True``: the largest peak of any
    waited-for child process (lifetime; prefer ``process_peak_rss_mb(pid)`` per child).
    """
    if children:
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    peak = process_peak_rss_mb("self")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    reset_peak_rss()
    return peak


def reset_peak_rss() -> None:
    """Start this process's peak RSS over at its current RSS (Linux; elsewhere a no-op).
    ``headrace bench`` calls it before each suite, once the previous one's data is freed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)
    except OSError:
        pass


def process_peak_rss_mb(pid: int | str) -> float | None:
    """Peak resident memory (VmHWM) of a running process, in MiB; None when it is gone or
    there is no /proc. Read it before the process exits (then it is too late)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024.0 if found else None


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """Run ``fn`` (which returns a record count); return (count, records per second)."""
    start = time.perf_counter()
    count = fn()
    elapsed = time.perf_counter() - start
    return count, (count / elapsed if elapsed > 0 else 0.0)


def delete_run_topics(env: dict[str, str], run_id: str) -> None:
    """Delete every topic whose name holds ``run_id`` (a bench run's); errors are ignored:
    cleanup never fails a run."""
    import contextlib

    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):
        admin = AdminClient({"bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"]})
        names = [t for t in admin.list_topics(timeout=10).topics if run_id in t]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                fut.result(30)
