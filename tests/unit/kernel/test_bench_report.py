"""`headrace bench` reports: Markdown with latency columns, per-figure and per-process peaks,
and the e2e bench's steady pacing."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from headrace.bench import BenchFigure, peak_rss_mb, process_peak_rss_mb
from headrace.bench_e2e import _insert_steadily
from headrace.cli.bench_cmd import markdown


def test_markdown_has_latency_columns_and_notes_only_when_a_figure_has_them() -> None:
    plain = BenchFigure("sink.dynamodb", 4000, 900.0, "boto3", 1000.0, 80.0, note="moto")
    e2e = BenchFigure(
        "e2e @500/s", 2500, 490.0, "offered 500/s", 500.0, 90.0, p50_ms=600.0, p99_ms=990.0
    )
    text = markdown([plain, e2e], "headrace bench (quick)")
    lines = text.splitlines()
    assert lines[0] == "# headrace bench (quick)"
    assert lines[2].endswith("| p50 ms | p99 ms |")
    assert "| sink.dynamodb | 4,000 | 900 | boto3 | 1,000 | 0.90 | 80 | - | - |" in lines
    assert "| e2e @500/s | 2,500 | 490 | offered 500/s | 500 | 0.98 | 90 | 600 | 990 |" in lines
    assert "- sink.dynamodb: moto" in lines
    assert "p99" not in markdown([plain], "t")


def test_peak_rss_is_per_figure_not_the_largest_so_far() -> None:
    peak_rss_mb()
    ballast = bytearray(150 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    del ballast
    first = peak_rss_mb()  # a figure that needed 150 MiB for a while
    second = peak_rss_mb()  # the next one needs nothing more
    assert first > second + 100  # the first figure's 150 MiB is not in the second's


def test_a_childs_peak_is_read_from_proc_while_it_runs() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; b = bytearray(120 << 20); b[::4096] = b'x' * len(b[::4096]); "
            "del b; print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ok\n"
        peak = process_peak_rss_mb(child.pid)
    finally:
        child.kill()
        child.wait()
    assert peak is not None and peak > 120
    assert process_peak_rss_mb(child.pid) is None  # gone: nothing to read


class _Cursor:
    def __init__(self) -> None:
        self.batches: list[tuple[float, list[tuple[Any, ...]]]] = []

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.batches.append((time.perf_counter(), rows))


def test_rows_are_inserted_at_a_steady_rate_stamped_with_their_insert_time() -> None:
    cursor = _Cursor()
    start = time.perf_counter()
    rows, elapsed = _insert_steadily(cursor, rate=2000, seconds=0.5)
    assert rows == 1000 == sum(len(b) for _, b in cursor.batches)
    assert 0.45 <= elapsed < 0.8
    ids = [r[0] for _, b in cursor.batches for r in b]
    assert ids == [f"o{n:09d}" for n in range(1, 1001)]  # unique keys, in order
    for at, batch in cursor.batches:
        # each 20 ms tick inserts what is due since the start: never far ahead of the rate
        assert len(batch) <= 2000 * (at - start) + 1
        assert all(isinstance(r[-1], datetime) and r[-1].tzinfo is None for r in batch)
