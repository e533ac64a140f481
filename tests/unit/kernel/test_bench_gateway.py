"""The gateway bench's parsing and figure logic: wrk's summary line, percentiles, ratios."""

from __future__ import annotations

import math

import orjson
import pytest

from headrace_dev.bench.gateway import (
    BATCH,
    batched_figure,
    p99_figure,
    pipeline_yaml,
    single_figure,
)
from headrace_dev.bench.gateway_load import WrkResult, lua_script, parse_wrk, percentile
from headrace_dev.bench.gateway_paced import Paced

WRK_OUT = """Running 5s test @ http://127.0.0.1:8088/topics/t/records
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.12ms    3.01ms  51.00ms   90.00%
  1000 requests in 5.00s, 300.00KB read
  Non-2xx or 3xx responses: 10
Requests/sec:    200.00
Transfer/sec:     60.00KB
WRK_JSON {"requests":1000,"duration_us":5000000,"status":10,"connect":0,"read":2,"write":0,\
"timeout":1,"p50_us":19876,"p99_us":48000}
"""


def test_parse_wrk_reads_the_summary_line() -> None:
    result = parse_wrk(WRK_OUT, cpu_s=1.5)
    assert result == WrkResult(1000, 5.0, 10, 3, 19.876, 48.0, 1.5)
    assert result.ok == 990
    assert result.ok_per_s == pytest.approx(198.0)


def test_parse_wrk_without_a_summary_says_so_with_the_output() -> None:
    with pytest.raises(ValueError, match=r"(?s)no WRK_JSON summary line.*unable to connect"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_batched_figure_counts_records_of_2xx_requests_against_the_raw_rate() -> None:
    wrk = WrkResult(requests=1000, seconds=5.0, non_2xx=0, socket_errors=0, p50_ms=8, p99_ms=20)
    fig = batched_figure(wrk, BATCH, raw_per_s=200_000.0, gateway_cpu_s=4.5, peak_mb=90.0)
    assert fig.records == 1000 * BATCH
    assert fig.ours_per_s == pytest.approx(100_000.0)
    assert fig.ratio == pytest.approx(0.5)
    assert fig.p99_ms == 20
    assert "the gateway 4.5 CPU-s (90%)" in fig.note  # the gateway's CPU over the run
    assert "target >= 50,000 records/s and >= 0.3x" in fig.note


def test_single_figure_is_requests_per_second() -> None:
    wrk = WrkResult(requests=20_000, seconds=5.0, non_2xx=500, socket_errors=0, p50_ms=1, p99_ms=9)
    fig = single_figure(wrk, raw_per_s=100_000.0, gateway_cpu_s=5.0, peak_mb=80.0, processes=2)
    assert fig.records == 19_500
    assert fig.ours_per_s == pytest.approx(3_900.0)
    assert fig.ratio == pytest.approx(0.039)
    assert "500 non-2xx" in fig.note and "2 gateway processes on one port" in fig.note


def test_p99_figure_ratio_is_answered_over_offered() -> None:
    latencies = [0.001 * (i + 1) for i in range(100)]  # 1 ms .. 100 ms
    result = Paced(
        rate=1000, offered=1000, seconds=1.0, ok=100, failed=900, latencies=latencies, cpu_s=0.25
    )
    fig = p99_figure(result, gateway_cpu_s=0.5, peak_mb=70.0)
    assert fig.name == "gateway.p99 @1000/s"
    assert fig.ratio == pytest.approx(0.1)
    assert (fig.p50_ms, fig.p99_ms) == (50.0, 99.0)
    assert "25% of a core" in fig.note and "900 failed" in fig.note
    lagged = p99_figure(
        Paced(1000, 1000, 1.0, 100, 0, latencies, 0.25, send_lags=[0.001] * 98 + [0.02] * 2),
        gateway_cpu_s=0.5,
        peak_mb=70.0,
    )
    assert "p50 1.0 ms / p99 20.0 ms after a request was due" in lagged.note


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == 2.0
    assert percentile([5.0], 0) == 5.0
    assert math.isnan(percentile([], 99))


def test_lua_script_embeds_the_body_and_token_safely() -> None:
    body = orjson.dumps([{"note": "a ]] and ]=] inside"}])
    script = lua_script(body, "tok.en.sig")
    assert 'wrk.headers["Authorization"] = "Bearer tok.en.sig"' in script
    assert "wrk.body = [==[" + body.decode() + "]==]" in script
    assert "WRK_JSON" in script
    # a JSON array ends in "]": with "[[...]]" it would close the Lua string one early
    script = lua_script(b'[{"a": 1}]', "t")
    assert 'wrk.body = [=[[{"a": 1}]]=]' in script


def test_the_bench_pipeline_has_auth_schema_and_limits() -> None:
    from headrace.config import Pipeline

    text = pipeline_yaml("127.0.0.1:9092", "hrbench.t", 8088)
    assert "${HRBENCH_GATEWAY_SECRET}" in text
    data = orjson.loads(text)
    data["gateway"]["auth"]["secret"] = "x" * 40
    pipeline = Pipeline.model_validate(data)
    gateway = pipeline.gateway
    assert gateway is not None and gateway.auth is not None and gateway.limits is not None
    assert gateway.topics["hrbench.t"].schema_ is not None
    assert gateway.topics["hrbench.t"].limit is not None


PAGE = """# HELP headrace_gateway_produce_seconds From producing ...
# TYPE headrace_gateway_produce_seconds histogram
headrace_gateway_produce_seconds_bucket{le="0.01",topic="t.gw"} 90.0
headrace_gateway_produce_seconds_bucket{le="0.025",topic="t.gw"} 97.0
headrace_gateway_produce_seconds_bucket{le="+Inf",topic="t.gw"} 100.0
headrace_gateway_produce_seconds_bucket{le="+Inf",topic="other"} 7.0
headrace_gateway_produce_seconds_count{topic="t.gw"} 100.0
"""


def test_the_paced_note_says_how_many_acknowledgements_were_slow() -> None:
    from headrace_dev.bench.gateway import _slow_acks
    from headrace_dev.bench.gateway_process import parse_buckets

    after = parse_buckets(PAGE, "t.gw")
    assert after == {0.01: 90.0, 0.025: 97.0, math.inf: 100.0}
    before = {0.01: 10.0, 0.025: 10.0, math.inf: 10.0}
    assert _slow_acks(before, after) == (3, 90)
    assert _slow_acks({}, {}) is None  # no page read: nothing said
    result = Paced(1000, 1000, 1.0, 100, 0, [0.001] * 100, 0.25)
    note = p99_figure(result, 0.5, 70.0, slow_acks=(3, 90)).note
    assert "3 of 90 requests (3.3%) waited longer than 25 ms from producing" in note
