"""The benchmark line format is the contract of `headrace bench --json`."""

from __future__ import annotations

import json

from headrace_dev.bench.common import BenchFigure, peak_rss_mb, timed


def test_json_line_has_the_documented_keys_and_ratio() -> None:
    fig = BenchFigure(
        "produce.s3_jsonl", 100_000, 50_000.0, "confluent-kafka produce", 80_000.0, 123.4
    )
    data = json.loads(fig.json_line())
    assert list(data) == [
        "name",
        "records",
        "ours_per_s",
        "baseline",
        "baseline_per_s",
        "peak_rss_mb",
        "ratio",
    ]
    assert data["ratio"] == 0.625


def test_latency_figures_add_percentiles() -> None:
    fig = BenchFigure("e2e", 10, 5000.0, "target", 5000.0, 1.0, p50_ms=12.0, p99_ms=80.0)
    data = fig.as_dict()
    assert data["p50_ms"] == 12.0 and data["p99_ms"] == 80.0 and data["ratio"] == 1.0


def test_zero_baseline_gives_zero_ratio_not_a_crash() -> None:
    assert BenchFigure("x", 1, 1.0, "none", 0.0, 1.0).ratio == 0.0


def test_timed_and_rss() -> None:
    count, rate = timed(lambda: sum(1 for _ in range(10_000)))
    assert count == 10_000 and rate > 0
    assert peak_rss_mb() > 1


def test_a_json_line_reads_back_as_the_same_figure() -> None:
    fig = BenchFigure("e2e @500/s", 2500, 490.5, "offered", 500.0, 90.0, 600.0, 990.0, "moto")
    assert BenchFigure.from_dict(json.loads(fig.json_line())) == fig
    plain = BenchFigure("sink.dynamodb", 4000, 900.0, "boto3", 1000.0, 80.0)
    assert BenchFigure.from_dict(json.loads(plain.json_line())) == plain
