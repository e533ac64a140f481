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
