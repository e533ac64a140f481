"""`headrace bench` reports: Markdown with latency columns, per-figure and per-process peaks,
the e2e bench's steady pacing and its pipeline file per sink."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb import DynamoDBSink
from connectors.mongodb import MongoSink
from headrace.config.loader import load_pipeline
from headrace_dev.bench.common import BenchFigure, process_peak_rss_mb
from headrace_dev.bench.e2e import SINKS, TUNING, Tuning, _insert_steadily, pipeline_yaml
from headrace_dev.commands.bench_cmd import markdown
from producers.mysql import MySQLSource


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
    # In a fresh interpreter: pytest's own process may hold hundreds of MiB by now (after the
    # integration tests), whose lifetime peak and allocator state would blur the figures.
    script = (
        "from headrace_dev.bench.common import peak_rss_mb\n"
        "peak_rss_mb()\n"
        "ballast = bytearray(150 * 1024 * 1024)\n"
        "ballast[::4096] = b'x' * len(ballast[::4096])  # touch every page\n"
        "del ballast\n"
        "first = peak_rss_mb()  # a figure that needed 150 MiB for a while\n"
        "second = peak_rss_mb()  # the next one needs nothing more\n"
        "print(first, second)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    first, second = map(float, out.split())
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


_ENV = {
    "HEADRACE_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
    "HEADRACE_MYSQL_URL": "mysql+pymysql://u:p@127.0.0.1:3306/headrace",
    "HEADRACE_MONGO_URI": "mongodb://127.0.0.1:27017",
    "HEADRACE_AWS_ENDPOINT": "http://127.0.0.1:5000",
}


@pytest.mark.parametrize("sink", SINKS)
def test_the_e2e_pipeline_file_is_valid_for_each_sink_and_carries_the_tuning(
    sink: str, tmp_path: Path
) -> None:
    tuning = Tuning(
        sink_batch=250, sink_linger="30ms", poll="40ms", source_batch=700, mongo_write="replace"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline_yaml(_ENV, "benche2etest", sink, tuning, 9999))
    pipeline = load_pipeline(path, env={})

    assert list(pipeline.sinks) == [f"orders_{sink}"]
    out = pipeline.sinks[f"orders_{sink}"]
    assert isinstance(out, MongoSink if sink == "mongodb" else DynamoDBSink)
    assert (out.from_, out.batch_size, out.linger) == ("benche2etest.orders.clean", 250, 0.03)
    if isinstance(out, MongoSink):
        assert (out.database, out.write) == ("benche2etest", "replace")
    source = pipeline.sources["orders_db"]
    assert isinstance(source, MySQLSource)
    assert (source.poll_interval, source.batch_size) == (0.04, 700)
    assert source.url.endswith("/benche2etest")
    assert list(pipeline.stages) == ["clean"]
    assert set(TUNING) == set(SINKS)
