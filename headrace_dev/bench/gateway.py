"""``headrace bench gateway``: the HTTP gateway against the raw producer, in one run.

The gateway runs as ``PROCESSES`` processes (``headrace gateway``; one per core, at most 2,
sharing the port through the file's ``processes``, the kernel spreading the connections)
with HS256 authentication, a JSON Schema on the topic and (generous) client and topic rate
limits on, so every request pays for all three; the bench process drives the load and,
first, measures the baseline on the same topic: plain confluent-kafka producing the same
record bytes with the producer settings every headrace process uses
(``headrace.kafka_clients.make_producer``: acks=all, idempotent, lz4), flush included. Figures:

- ``gateway.batched_posts``: records/s accepted in POSTs of ``BATCH`` records (a JSON array),
  ``wrk`` with ``BATCH_CONNECTIONS`` connections; ratio against the raw producer (target
  >= 50,000 records/s and >= 0.3x);
- ``gateway.single_posts``: requests/s of one-record POSTs, ``wrk`` with
  ``SINGLE_CONNECTIONS`` connections (target >= 3,000 requests/s); ratio against the raw
  producer's records/s;
- ``gateway.p99 @1000/s``: p50/p99 latency of one-record POSTs offered at a fixed
  ``P99_RATE`` requests/s by an open-loop, paced generator (``gateway_paced``: a process of
  its own, raw HTTP/1.1 on keep-alive connections, uvloop and httptools; a request's latency
  runs from when it was *due*, so a stall of the gateway is not hidden by the generator
  waiting for it: no coordinated omission). Ratio: requests answered 2xx per second /
  requests offered per second (target p99 < 25 ms).

The generators are ``gateway_load`` (wrk) and ``gateway_paced``, the gateway processes
``gateway_process``.

The load generators must not be the bottleneck; their cost is measured and reported in the
notes: ``wrk``'s own CPU time (its rusage as a child process), the paced generator's (its
own rusage over the run), and the gateway's (``/proc/<pid>/stat``).
``wrk`` is the Debian package, installed on first use like the stack's packages. Each phase
also checks its count against the topic: the records the topic gained (its end offsets) must
hold every record answered 2xx, and more only for requests wrk had in flight when it stopped
(it closes those connections unanswered), lost to socket errors, or answered with an error
(a produce timeout's 503 may come after the broker wrote them), or the bench fails.

``quick``: 5 s per phase, 200,000 raw records; full: 20 s and 1,000,000.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import uuid4

import orjson

from headrace.config import KafkaConfig
from headrace.errors import HeadraceError
from headrace.kafka_clients import ensure_topics, make_producer
from headrace_dev.bench.common import BenchFigure, peak_rss_mb
from headrace_dev.bench.gateway_load import (
    WrkResult,
    ensure_wrk,
    lua_script,
    percentile,
    run_wrk,
)
from headrace_dev.bench.gateway_paced import Paced, run_paced
from headrace_dev.bench.gateway_process import SECRET_ENV, GatewayProcesses, free_port, post

__all__ = [
    "BATCH",
    "P99_RATE",
    "batched_figure",
    "p99_figure",
    "pipeline_yaml",
    "run",
    "run_gateway_bench",
    "single_figure",
]

BATCH = 500
"""Records per batched POST."""
BATCH_CONNECTIONS = 8
SINGLE_CONNECTIONS = 64
P99_RATE = 1000
"""Requests/s offered by the paced generator."""
ACK_BOUND = 0.025
"""The paced note counts the requests that waited longer than this (seconds; a bucket bound
of the gateway's produce histogram) from producing their records to the last delivery
report: how much of a slow tail was spent waiting for Kafka rather than in HTTP."""
PARTITIONS = 3
PROCESSES = max(1, min(2, os.cpu_count() or 1))
"""Gateway processes sharing the port (the file's ``processes``): one per core, at most 2."""
SIZES = {True: {"seconds": 5.0, "raw": 200_000}, False: {"seconds": 20.0, "raw": 1_000_000}}
_ISSUER = "headrace-bench"
_AUDIENCE = "headrace-gateway"
_BASELINE = "confluent-kafka producer (acks=all, idempotent), same records, same topic"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "customer_id", "price", "quantity", "status"],
    "properties": {
        "order_id": {"type": "string", "minLength": 1},
        "customer_id": {"type": "string"},
        "price": {"type": "number", "minimum": 0},
        "quantity": {"type": "integer", "minimum": 1},
        "status": {"enum": ["new", "paid", "shipped"]},
    },
}


def record(n: int) -> dict[str, Any]:
    """Order ``n``, valid under ``SCHEMA``."""
    return {
        "order_id": f"o{n:09d}",
        "customer_id": f"c{n % 997}",
        "price": round(1 + n % 400 / 4, 2),
        "quantity": 1 + n % 3,
        "status": "paid",
    }


# -- figures ----------------------------------------------------------------------------------


def _processes(processes: int) -> str:
    return "1 gateway process" if processes == 1 else f"{processes} gateway processes on one port"


def _cost(wrk: WrkResult, gateway_cpu_s: float) -> str:
    return (
        f"wrk (1 thread) used {wrk.cpu_s:.1f} CPU-s in {wrk.seconds:.1f} s "
        f"({100 * wrk.cpu_s / wrk.seconds:.0f}% of a core), the gateway "
        f"{gateway_cpu_s:.1f} CPU-s ({100 * gateway_cpu_s / wrk.seconds:.0f}%)"
        if wrk.seconds > 0
        else "wrk ran for 0 s"
    )


def batched_figure(
    wrk: WrkResult,
    batch: int,
    raw_per_s: float,
    gateway_cpu_s: float,
    peak_mb: float,
    processes: int = 1,
) -> BenchFigure:
    """``gateway.batched_posts``: records/s accepted in ``batch``-record POSTs."""
    records = wrk.ok * batch
    per_s = records / wrk.seconds if wrk.seconds > 0 else 0.0
    return BenchFigure(
        "gateway.batched_posts",
        records,
        per_s,
        _BASELINE,
        raw_per_s,
        peak_mb,
        p50_ms=round(wrk.p50_ms, 1),
        p99_ms=round(wrk.p99_ms, 1),
        note=f"POSTs of {batch} JSON records, wrk -c{BATCH_CONNECTIONS}, "
        f"{_processes(processes)}, HS256 token, JSON Schema, rate limits on; "
        f"{wrk.ok:,} requests 2xx, {wrk.non_2xx} other, {wrk.socket_errors} socket errors; "
        f"{_cost(wrk, gateway_cpu_s)}; "
        "target >= 50,000 records/s and >= 0.3x the raw producer",
    )


def single_figure(
    wrk: WrkResult, raw_per_s: float, gateway_cpu_s: float, peak_mb: float, processes: int = 1
) -> BenchFigure:
    """``gateway.single_posts``: one-record POSTs, requests/s (= records/s)."""
    return BenchFigure(
        "gateway.single_posts",
        wrk.ok,
        wrk.ok_per_s,
        _BASELINE,
        raw_per_s,
        peak_mb,
        p50_ms=round(wrk.p50_ms, 1),
        p99_ms=round(wrk.p99_ms, 1),
        note=f"one record per POST, wrk -c{SINGLE_CONNECTIONS}, closed loop (as fast as "
        f"answered), {_processes(processes)}; {wrk.non_2xx} non-2xx, "
        f"{wrk.socket_errors} socket errors; "
        f"{_cost(wrk, gateway_cpu_s)}; target >= 3,000 requests/s",
    )


def p99_figure(
    result: Paced,
    gateway_cpu_s: float,
    peak_mb: float,
    processes: int = 1,
    slow_acks: tuple[int, int] | None = None,
) -> BenchFigure:
    """``gateway.p99 @<rate>/s``: latency at a fixed offered rate; ratio answered/offered.
    ``slow_acks``: (requests that waited longer than ``ACK_BOUND`` for their delivery
    reports, requests produced), from the gateway's produce histogram."""
    p50 = percentile(result.latencies, 50) * 1000
    p99 = percentile(result.latencies, 99) * 1000
    lag50 = percentile(result.send_lags, 50) * 1000 if result.send_lags else 0.0
    lag99 = percentile(result.send_lags, 99) * 1000 if result.send_lags else 0.0
    seconds = result.seconds
    return BenchFigure(
        f"gateway.p99 @{result.rate}/s",
        result.ok,
        result.ok_per_s,
        "requests offered per second (open loop, paced)",
        result.offered_per_s,
        peak_mb,
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        note=f"one-record POSTs, each timed from when it was due (no coordinated omission), "
        f"{_processes(processes)}; {result.failed} failed; the generator (a process of its "
        f"own: raw HTTP/1.1 on uvloop, {result.connections or 'its'} keep-alive connections) "
        f"used {result.cpu_s:.1f} CPU-s in {seconds:.1f} s "
        f"({100 * result.cpu_s / seconds if seconds else 0:.0f}% of a core) and began "
        f"sending p50 {lag50:.1f} ms / p99 {lag99:.1f} ms after a request was due (its own "
        f"delay, part of the latencies){_written(result)}, the gateway "
        f"{gateway_cpu_s:.1f} CPU-s{_acks(slow_acks)}; target p99 < 25 ms",
    )


def _acks(slow_acks: tuple[int, int] | None) -> str:
    if slow_acks is None:
        return ""
    slow, total = slow_acks
    share = f" ({100 * slow / total:.1f}%)" if total else ""
    return (
        f"; {slow:,} of {total:,} requests{share} waited longer than {ACK_BOUND * 1000:g} ms "
        "from producing to their last delivery report (the gateway's produce histogram: "
        "linger, the broker, the report's way back to the event loop)"
    )


def _slow_acks(before: dict[float, float], after: dict[float, float]) -> tuple[int, int] | None:
    """(acknowledged later than ``ACK_BOUND``, all) between two readings of the histogram."""
    if ACK_BOUND not in after or math.inf not in after:
        return None
    total = after[math.inf] - before.get(math.inf, 0.0)
    within = after[ACK_BOUND] - before.get(ACK_BOUND, 0.0)
    return round(total - within), round(total)


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}"


def _written(result: Paced) -> str:
    """The split of the latencies at the moment each request was written, when the generator
    measured it: its own whole delay before it, the gateway's part after it; and what the
    percentiles leave out."""
    if not result.write_lags:
        return ""
    text = (
        f", wrote the request p50 {_ms(result.write_lags, 50)} ms / p99 "
        f"{_ms(result.write_lags, 99)} ms after it was due"
    )
    if result.answered:
        text += (
            f"; from written to answered (the gateway's part): p50 "
            f"{_ms(result.answered, 50)} ms / p99 {_ms(result.answered, 99)} ms"
        )
    if result.failed:
        text += f"; the {result.failed} failed requests are in no percentile"
    return text


# -- the run ----------------------------------------------------------------------------------


def pipeline_yaml(bootstrap: str, topic: str, port: int, processes: int = 1) -> str:
    """The bench's pipeline file: only a gateway, auth + schema + limits on."""
    data = {
        "name": "hrbenchgateway",
        "kafka": {"bootstrap_servers": bootstrap},
        "gateway": {
            "host": "127.0.0.1",
            "port": port,
            "processes": processes,
            "auth": {
                "secret": "${" + SECRET_ENV + "}",
                "issuer": _ISSUER,
                "audience": _AUDIENCE,
            },
            "limits": {"rate": 10_000_000, "burst": 10_000_000},
            "topics": {
                topic: {
                    "key": ["order_id"],
                    "schema": SCHEMA,
                    "limit": {"rate": 10_000_000, "burst": 10_000_000},
                }
            },
        },
    }
    return json.dumps(data, indent=2) + "\n"  # JSON is YAML


def _end_offsets(kafka: KafkaConfig, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"{topic}.offsets"}
    )
    try:
        total = 0
        for p in range(PARTITIONS):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def _settled_offsets(kafka: KafkaConfig, topic: str, quiet: float = 0.5) -> int:
    """``_end_offsets`` once it stopped moving for ``quiet`` seconds (at most 30 s): requests
    a generator left in flight are still being written when it exits, and must count in the
    phase that sent them, not the next one."""
    last = _end_offsets(kafka, topic)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _end_offsets(kafka, topic)
        if now == last:
            return now
        last = now
    return last


def _raw(kafka: KafkaConfig, topic: str, n: int) -> float:
    """Records/s of the raw producer on ``topic``: the same record bytes, flush included."""
    values = [orjson.dumps(record(i)) for i in range(n)]
    keys = [record(i)["order_id"].encode() for i in range(min(n, 1000))]
    producer = make_producer(kafka)
    producer.produce(topic, b"{}", b"warm-up")  # producer id and metadata, off the clock
    producer.flush(30)
    start = time.perf_counter()
    produce = producer.produce
    for i, value in enumerate(values):
        while True:
            try:
                produce(topic, value, keys[i % len(keys)])
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return n / (time.perf_counter() - start)


def _check_topic(what: str, gained: int, answered: int, unsure: int = 0) -> None:
    """The topic gained the records answered 2xx, plus at most ``unsure``: those of requests
    still in flight when the generator stopped (wrk closes its connections without their
    answers), lost to a socket error, or answered with an error after the broker may have
    written them (a produce timeout's 503)."""
    if not answered <= gained <= answered + unsure:
        raise HeadraceError(
            f"bench gateway: {what}: the topic gained {gained:,} records but {answered:,} were "
            f"answered 2xx (and at most {unsure:,} more may have been written)"
        )


def run_gateway_bench(
    env: dict[str, str],
    seconds: float,
    raw_records: int,
    p99_rate: int = P99_RATE,
    processes: int = PROCESSES,
) -> list[BenchFigure]:
    """The three figures (module doc), each phase ``seconds`` long, against ``processes``
    gateway processes on one port and the stack in ``env``; the topic is deleted afterwards."""
    import secrets

    from gateway.auth import mint_token
    from headrace.config.gateway_security import GatewayAuth

    wrk = ensure_wrk(lambda msg: print(f"bench gateway: {msg}", file=sys.stderr))
    kafka = KafkaConfig.model_validate({"bootstrap_servers": env["HEADRACE_KAFKA_BOOTSTRAP"]})
    topic = f"hrbench{uuid4().hex[:8]}.gateway"
    ensure_topics(kafka, {topic: PARTITIONS})
    secret = secrets.token_urlsafe(32)
    auth = GatewayAuth.model_validate({"secret": secret, "issuer": _ISSUER, "audience": _AUDIENCE})
    token = mint_token(auth, sub="bench", scopes=[f"publish:{topic}"], ttl=3600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/topics/{topic}/records"
    batch_body = orjson.dumps([record(i) for i in range(BATCH)])
    single_body = orjson.dumps(record(7))
    figures: list[BenchFigure] = []
    with TemporaryDirectory(prefix="hrbench-gateway-") as tmp:
        work = Path(tmp)
        pipeline = work / "pipeline.yaml"
        pipeline.write_text(pipeline_yaml(kafka.bootstrap_servers, topic, port, processes))
        raw = _raw(kafka, topic, raw_records)
        gateway = GatewayProcesses(pipeline, work / "gateway.log", secret, processes)
        try:
            gateway.wait_ready(base)
            for body in (single_body, batch_body):  # warm-up, and a check that it accepts
                status = post(url, body, token)
                if status != 200:
                    raise HeadraceError(
                        f"bench gateway: a warm-up POST got {status}, not 200 (see "
                        f"{gateway.tail()})"
                    )
            for name, body, connections in (
                ("batched", batch_body, BATCH_CONNECTIONS),
                ("single", single_body, SINGLE_CONNECTIONS),
            ):
                script = work / f"{name}.lua"
                script.write_text(lua_script(body, token))
                offset = _settled_offsets(kafka, topic)
                cpu = gateway.cpu()
                result = run_wrk(wrk, url, script, connections=connections, seconds=seconds)
                cpu = gateway.cpu() - cpu
                per_request = BATCH if name == "batched" else 1
                # unanswered (in flight at the end, socket errors) or answered with an error
                # after the broker may have written them (a produce timeout's 503)
                unsure = connections + result.socket_errors + result.non_2xx
                _check_topic(
                    name,
                    _settled_offsets(kafka, topic) - offset,
                    result.ok * per_request,
                    unsure * per_request,
                )
                if name == "batched":
                    figures.append(
                        batched_figure(result, BATCH, raw, cpu, gateway.peak_mb(), processes)
                    )
                else:
                    figures.append(single_figure(result, raw, cpu, gateway.peak_mb(), processes))
                print(f"bench gateway: {figures[-1].json_line()}", file=sys.stderr)
            offset = _settled_offsets(kafka, topic)
            cpu = gateway.cpu()
            acks = gateway.produce_buckets(topic)
            single_file = work / "single.json"
            single_file.write_bytes(single_body)
            paced_result = run_paced(url, p99_rate, seconds, single_file, token)
            cpu = gateway.cpu() - cpu
            slow_acks = _slow_acks(acks, gateway.produce_buckets(topic))
            _check_topic("paced", _settled_offsets(kafka, topic) - offset, paced_result.ok)
            figures.append(p99_figure(paced_result, cpu, gateway.peak_mb(), processes, slow_acks))
        finally:
            gateway.stop()
            _delete_topic(kafka, topic)
    peak_rss_mb()  # the bench process's own peak is not a figure's
    return figures


def _delete_topic(kafka: KafkaConfig, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    with contextlib.suppress(Exception):
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        for future in admin.delete_topics([topic, f"{topic}.dlq"], operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(30)


def run(env: dict[str, str], quick: bool) -> list[BenchFigure]:
    """Every gateway figure against the stack in ``env``; ``quick``: 5 s per phase."""
    size = SIZES[quick]
    return run_gateway_bench(env, float(size["seconds"]), int(size["raw"]))
