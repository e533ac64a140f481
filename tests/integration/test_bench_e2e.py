"""`headrace bench e2e` on the real stack, into each sink (`--sink mongodb|dynamodb`): every
steady row is counted once by the sink's end-to-end histogram and seen in both topics; the
percentiles are plausible. Rates are reported by the bench, never asserted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headrace_dev.bench.e2e import SINKS, figure, run_e2e

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)


@pytest.mark.parametrize("sink", SINKS)
def test_steady_rows_are_all_written_and_measured(
    sink: str, stack_env: dict[str, str], tmp_path: Path
) -> None:
    rate, seconds = 200, 3.0 * SCALE
    result = run_e2e(stack_env, rate, seconds, tmp_path, sink)

    assert result.sink == sink
    assert result.rows == int(rate * seconds)
    assert result.written == result.rows  # the sink's histogram counted each steady row once
    assert 0 <= result.backlog <= result.rows
    assert set(result.hops) == {"raw topic", "clean topic"}
    for hop, (seen, p50, p99) in result.hops.items():
        assert seen == result.rows, hop
        assert 0 <= p50 <= p99 < 60, hop
    raw_p50, clean_p50 = result.hops["raw topic"][1], result.hops["clean topic"][1]
    assert raw_p50 <= clean_p50  # a row is in the raw topic before the stage's output
    assert result.p50_s is not None and result.p99_s is not None
    assert 0 < result.p50_s <= result.p99_s < 60  # interpolated within histogram buckets
    assert set(result.peak_rss_mb) == {"source", "worker", "sink"}
    assert all(mb > 20 for mb in result.peak_rss_mb.values())  # read from each live process
    assert result.load_1m >= 0

    fig = figure(result, rate)
    assert fig.name == f"e2e mysql->stage->{sink} @{rate}/s"
    assert fig.records == result.rows and fig.p99_ms == round(result.p99_s * 1000, 1)
    assert "load average" in fig.note


def test_the_gateway_bench_runs_briefly_and_checks_the_topic(stack_env: dict[str, str]) -> None:
    """`headrace bench gateway` for 1 s per phase: three figures against the raw producer
    measured in the same run; each phase's 2xx answers were checked against the topic."""
    from headrace_dev.bench.gateway import BATCH, run_gateway_bench

    figures = run_gateway_bench(stack_env, seconds=1.0, raw_records=2_000, p99_rate=100)

    batched, single, paced = figures
    assert batched.name == "gateway.batched_posts" and single.name == "gateway.single_posts"
    assert paced.name == "gateway.p99 @100/s"
    assert batched.records > 0 and batched.records % BATCH == 0
    assert single.records > 0 and paced.records == 100  # every paced request answered 2xx
    assert batched.baseline_per_s == single.baseline_per_s > 0  # the same raw producer run
    assert 0 < batched.ratio and 0.8 < paced.ratio <= 1.05
    for fig in figures:
        assert fig.p50_ms is not None and fig.p99_ms is not None
        assert 0 < fig.p50_ms <= fig.p99_ms
        assert fig.peak_rss_mb > 20  # the gateway process's, read while it ran
        assert "CPU-s" in fig.note  # the generator's and the gateway's own cost
