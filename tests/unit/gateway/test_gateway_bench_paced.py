"""The paced figure splits its latencies where each request was written: the generator's own
delay before, the gateway's part after, and says what its percentiles leave out."""

from __future__ import annotations

from headrace_dev.bench.gateway import p99_figure
from headrace_dev.bench.gateway_load import Paced


def test_the_note_splits_the_latency_at_the_write() -> None:
    latencies = [0.001 * (i + 1) for i in range(100)]
    result = Paced(
        1000,
        1000,
        1.0,
        100,
        3,
        latencies,
        0.25,
        send_lags=[0.0005] * 100,
        write_lags=[0.001] * 98 + [0.03] * 2,
        answered=[0.002] * 99 + [0.05],
    )
    note = p99_figure(result, gateway_cpu_s=0.5, peak_mb=70.0).note
    assert "wrote the request p50 1.0 ms / p99 30.0 ms after it was due" in note
    assert "from written to answered (the gateway's part): p50 2.0 ms / p99 2.0 ms" in note
    assert "the 3 failed requests are in no percentile" in note


def test_without_write_times_the_note_is_as_before() -> None:
    result = Paced(1000, 1000, 1.0, 1, 0, [0.001], 0.25, send_lags=[0.001])
    note = p99_figure(result, gateway_cpu_s=0.5, peak_mb=70.0).note
    assert "wrote the request" not in note and "in no percentile" not in note
