"""``headrace bench produce``: our sources against raw baselines, in one run, on the same data.

Figures (one ``BenchFigure`` each):

- ``produce.s3_jsonl``: one gzip JSONL object through our S3 source into Kafka, vs plain
  confluent-kafka producing the same pre-encoded (key, value) bytes with the same settings
  (ours also sets each record's timestamp from its ``created_at``, as configured; the
  baseline leaves it to the producer's clock). The baseline runs just before ours and just
  after it, and its rate is over both runs (the note gives both, and ours against each).
- ``produce.s3_small_objects``: many ~1 KB JSONL objects (objects/s), vs a raw concurrent
  boto3 GET of the same objects with the same concurrency (the endpoint's ceiling).
- ``produce.mysql``: a table through our MySQL source (timestamp+incrementing) into Kafka with
  the C driver (mysqlclient, ``mysql+mysqldb://``), vs a plain SQLAlchemy streaming SELECT of
  the same rows through the same driver (read only); ``produce.mysql_pymysql`` the same with
  the pure-Python PyMySQL driver.

``quick`` uses small sizes (well under a minute); the full run uses 1,000,000 rows and a
gzip object of ~1.3 M lines (~200 MB of JSONL). Everything created is named ``hrbench<id>``
and deleted afterwards (topics, bucket objects, the database).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from headrace.kafka_clients import producer_config
from headrace_dev.bench.common import BenchFigure, delete_run_topics, peak_rss_mb
from headrace_dev.bench.produce_data import (
    create_orders_table,
    jsonl_lines,
    put_gzip_jsonl,
    put_small_objects,
)
from producers.projection import NATIVE_READER
from producers.s3_formats import GZIP_READER

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["run"]

SIZES = {
    True: {"lines": 200_000, "objects": 300, "rows": 150_000},
    False: {"lines": 1_300_000, "objects": 2_000, "rows": 1_000_000},
}


def _pipeline(env: dict[str, str], name: str, sources: dict[str, Any]) -> Pipeline:
    from headrace.config import Pipeline

    return Pipeline.model_validate(
        {
            "name": name,
            "kafka": {"bootstrap_servers": env["HEADRACE_KAFKA_BOOTSTRAP"]},
            "sources": sources,
        }
    )


def _s3_source(
    env: dict[str, str], bucket: str, prefix: str, fmt: str, topic: str
) -> dict[str, Any]:
    return {
        "type": "s3",
        "bucket": bucket,
        "prefix": prefix,
        "format": fmt,
        "endpoint_url": env["HEADRACE_AWS_ENDPOINT"],
        "region": env.get("AWS_DEFAULT_REGION") or "us-east-1",
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID") or "testing",
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY") or "testing",
        "topic": topic,
        "key": ["order_id"],
        "timestamp_field": "created_at",
    }


def _ours(pipeline: Pipeline, name: str) -> tuple[int, float]:
    """(records, records/s) of one ``--once`` pass of source ``name``."""
    from producers.build import build_runner

    runner, _ = build_runner(pipeline, name)
    progress = runner.run(once=True, poll_interval=0)
    elapsed = time.monotonic() - progress.started
    return progress.records, progress.records / elapsed if elapsed else 0.0


def _raw_produce(pipeline: Pipeline, topic: str, pairs: list[tuple[bytes, bytes]]) -> float:
    """Records/s of plain confluent-kafka producing pre-encoded pairs, flush included."""
    from confluent_kafka import Producer

    from headrace.kafka_clients import ensure_topics
    from producers.build import DEFAULT_PARTITIONS

    ensure_topics(pipeline.kafka, {topic: DEFAULT_PARTITIONS})  # same layout as ours
    p = Producer(producer_config(pipeline.kafka))
    # one message first, outside the clock: the idempotent producer's id and the topic's
    # metadata are fetched, as ours fetched them while restoring its checkpoint (without
    # this a 200,000-record run spent most of its time waiting for them)
    p.produce(topic, b"", b"warm-up")
    p.flush(30)
    start = time.perf_counter()
    produce = p.produce
    for key, value in pairs:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return len(pairs) / (time.perf_counter() - start)


def _s3_client(env: dict[str, str], pool: int = 16) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=env["HEADRACE_AWS_ENDPOINT"],
        region_name=env.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or "testing",
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or "testing",
        config=Config(max_pool_connections=pool),
    )


def _bench_s3_jsonl(
    env: dict[str, str], run_id: str, s3: Any, bucket: str, lines: int
) -> BenchFigure:
    import orjson

    size = put_gzip_jsonl(s3, bucket, "big/orders.jsonl.gz", 0, lines)
    topic = f"{run_id}.s3jsonl"
    pipeline = _pipeline(
        env, run_id + "a", {"big": _s3_source(env, bucket, "big/", "jsonl.gz", topic)}
    )
    pairs = [
        (orjson.loads(line)["order_id"].encode(), line.rstrip(b"\n"))
        for line in jsonl_lines(0, lines)
    ]
    gc.collect()
    gc.freeze()  # the pairs live through both baseline runs: never scanned by the collector
    # the baseline runs before and after ours, its rate is over both runs: the runs drift
    # (measured: a baseline run just after another run was 4-30% faster than one before it),
    # and ours in the middle meets the average of that drift
    before = _raw_produce(pipeline, topic + ".raw1", pairs)
    count, ours = _ours(pipeline, "big")
    after = _raw_produce(pipeline, topic + ".raw2", pairs)
    raw = 2 / (1 / before + 1 / after)
    return BenchFigure(
        "produce.s3_jsonl",
        count,
        ours,
        "confluent-kafka produce of pre-encoded bytes",
        raw,
        peak_rss_mb(),
        note=f"one gzip object, {size / 1e6:.1f} MB compressed, {lines} lines, read with "
        f"{GZIP_READER.__module__} and the "
        f"{'native field reader' if NATIVE_READER else 'msgspec field reader (native not built)'}"
        "; ours sets each record's event time (created_at), the "
        f"baseline none; the baseline ran before ours ({before:,.0f}/s, ratio "
        f"{ours / before:.3f}) and after it ({after:,.0f}/s, ratio {ours / after:.3f}): "
        "its rate is over both runs",
    )


def _bench_s3_small(
    env: dict[str, str], run_id: str, s3: Any, bucket: str, objects: int
) -> BenchFigure:
    from concurrent.futures import ThreadPoolExecutor

    put_small_objects(s3, bucket, "small/", objects, 6)
    topic = f"{run_id}.s3small"
    src = _s3_source(env, bucket, "small/", "jsonl", topic)
    pipeline = _pipeline(env, run_id + "b", {"small": src})
    from producers.build import build_runner

    runner, _ = build_runner(pipeline, "small")
    progress = runner.run(once=True, poll_interval=0)
    ours = progress.units / (time.monotonic() - progress.started)
    keys = [f"small/{n:07d}.jsonl" for n in range(objects)]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))
    raw = objects / (time.perf_counter() - start)
    return BenchFigure(
        "produce.s3_small_objects",
        progress.units,
        ours,
        "boto3 GET of the same objects, 8 threads",
        raw,
        peak_rss_mb(),
        note="objects/s, ~1 KB JSONL objects, concurrency 8",
    )


def _bench_mysql(env: dict[str, str], run_id: str, rows: int) -> list[BenchFigure]:
    """The MySQL source with each installed driver (mysqlclient first), each against a
    plain SQLAlchemy streaming SELECT through the same driver."""
    from sqlalchemy import create_engine, text

    base = env["HEADRACE_MYSQL_URL"]
    root = create_engine(base)
    db = run_id
    with root.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {db}"))
    figures = []
    try:
        url = base.rsplit("/", 1)[0] + f"/{db}"
        with create_engine(url).begin() as conn:
            create_orders_table(conn, "orders", rows)
        rest = url.split("://", 1)[1]
        drivers = [d for d in ("mysqldb", "pymysql") if importlib.util.find_spec(_MODULES[d])]
        for n, driver in enumerate(drivers):
            figures.append(
                _bench_mysql_driver(env, run_id, f"mysql+{driver}://{rest}", rows, str(n))
            )
        return figures
    finally:
        with root.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {db}"))
        root.dispose()


_MODULES = {"mysqldb": "MySQLdb", "pymysql": "pymysql"}


def _bench_mysql_driver(
    env: dict[str, str], run_id: str, url: str, rows: int, suffix: str
) -> BenchFigure:
    from sqlalchemy import text

    from producers.mysql_source import driver_of, make_engine

    driver = driver_of(url)
    source = {
        "type": "mysql",
        "url": url,
        "table": "orders",
        "mode": "timestamp+incrementing",
        "incrementing_column": "id",
        "timestamp_column": "updated_at",
        "topic": f"{run_id}.mysql{suffix}",
        "key": ["id"],
        "timestamp_field": "updated_at",
    }
    pipeline = _pipeline(env, run_id + "c" + suffix, {"orders": source})
    count, ours = _ours(pipeline, "orders")
    engine = make_engine(url)  # the same driver and conversions as the source
    start = time.perf_counter()
    n = 0
    with engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(text("SELECT * FROM orders ORDER BY updated_at, id"))
        while batch := result.fetchmany(10_000):
            n += len(batch)
    raw = n / (time.perf_counter() - start)
    engine.dispose()
    return BenchFigure(
        "produce.mysql" if driver == "mysqldb" else f"produce.mysql_{driver}",
        count,
        ours,
        f"SQLAlchemy streaming SELECT (read only), {driver}",
        raw,
        peak_rss_mb(),
        note=f"mysql+{driver} driver, {rows} rows, 8 columns; target >= 60,000 rows/s",
    )


def _cleanup(env: dict[str, str], run_id: str, s3: Any, bucket: str) -> None:
    delete_run_topics(env, run_id)
    with contextlib.suppress(Exception):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)


def run(env: dict[str, str], quick: bool) -> list[BenchFigure]:
    """Every producer figure, measured against the stack named in ``env`` (``.stack/env``)."""
    from headrace.gc_tuning import tune_gc

    tune_gc()  # as `headrace produce` does
    size = SIZES[quick]
    run_id = f"hrbench{uuid4().hex[:8]}"
    s3 = _s3_client(env)
    bucket = run_id
    s3.create_bucket(Bucket=bucket)
    try:
        return [
            _bench_s3_jsonl(env, run_id, s3, bucket, size["lines"]),
            _bench_s3_small(env, run_id, s3, bucket, size["objects"]),
            *_bench_mysql(env, run_id, size["rows"]),
        ]
    finally:
        _cleanup(env, run_id, s3, bucket)
