"""Crash safety on the real stack: SIGKILL mid-backfill (a MySQL table, S3 gzip JSONL objects),
restart, count every key; SIGTERM flushes, checkpoints and exits 0."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from fixtures.values import present
from sqlalchemy import create_engine

from headrace.checkpoints import CheckpointStore
from headrace_dev.bench.produce_data import create_orders_table, put_gzip_jsonl
from producers.testing import read_topic, write_pipeline

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)
# the source reads ~90-110k rows/s here; _kill_mid_backfill freezes it between looks
ROWS = max(20_000, int(300_000 * SCALE))
# S3: objects of OBJECT_LINES lines; the source sends ~250k lines/s here, a checkpoint is
# stored within ~3 s of producing nonstop, so the kill lands mid-way (mid-object or between)
S3_OBJECTS = 4
OBJECT_LINES = max(50_000, int(400_000 * SCALE))


def _start(
    repo_root: Path, stack_env: dict[str, str], pipeline: Path, *args: str
) -> subprocess.Popen[str]:
    env = {**os.environ, **stack_env, "HEADRACE_PROMETHEUS_TARGETS": ""}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headrace_cli.main",
            "produce",
            "-f",
            str(pipeline),
            "orders",
            *args,
        ],
        cwd=repo_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _produced(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def _wait_for(predicate, what: str, proc: subprocess.Popen[str], limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(
                f"producer exited ({proc.returncode}) before {what}: "
                f"{proc.stderr.read() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {limit:.0f}s")
        time.sleep(0.05)


#: how long the source runs between two looks at it (frozen with SIGSTOP while looked at)
SLICE = 0.05


def _kill_mid_backfill(
    repo_root: Path,
    stack_env: dict[str, str],
    pipeline: Path,
    store: CheckpointStore,
    topic: str,
    total: int,
) -> tuple[int, dict[str, Any]]:
    """Start the source and SIGKILL it once it produced a fifth of ``total`` records and stored a
    checkpoint; return (records in ``topic`` at the kill, the stored checkpoint).

    The source runs in slices of ``SLICE`` seconds and is frozen (SIGSTOP) while the topic and
    the checkpoint are looked at, so however fast the machine, the backfill cannot finish
    between "a checkpoint is there" and the kill (a CI run once saw all 300,000 rows out
    before the looks, taken while the source ran on, found the checkpoint)."""
    bootstrap = stack_env["HEADRACE_KAFKA_BOOTSTRAP"]
    proc = _start(repo_root, stack_env, pipeline)
    deadline = time.monotonic() + 180
    try:
        while True:
            proc.send_signal(signal.SIGCONT)
            time.sleep(SLICE)
            proc.send_signal(signal.SIGSTOP)
            if proc.poll() is not None:
                pytest.fail(
                    f"producer exited ({proc.returncode}) mid-backfill: "
                    f"{proc.stderr.read() if proc.stderr else ''}"
                )
            if _produced(bootstrap, topic) >= total // 5 and store.load() is not None:
                break
            if time.monotonic() > deadline:
                pytest.fail("no fifth of the records and a checkpoint within 180 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    at_kill = _produced(bootstrap, topic)
    checkpoint = store.load()
    assert checkpoint is not None
    assert at_kill < total  # really stopped mid-way
    return at_kill, checkpoint


@pytest.fixture
def orders_pipeline(db_url, unique, tmp_path, kafka_bootstrap, new_topic):
    topic = new_topic(".orders", 3)
    with create_engine(db_url).begin() as conn:
        create_orders_table(conn, "orders", ROWS)
    path = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "orders": {
                "type": "mysql",
                "url": db_url,
                "table": "orders",
                "mode": "timestamp+incrementing",
                "incrementing_column": "id",
                "timestamp_column": "updated_at",
                "topic": topic,
                "key": ["id"],
                "batch_size": 1000,
                "poll_interval": "1s",
            }
        },
        metrics={"port": 19320},
    )
    return path, topic


def test_sigkill_mid_backfill_then_restart_loses_nothing_and_repeats_only_after_checkpoint(
    orders_pipeline, unique, repo_root, stack_env, kafka_bootstrap
):
    pipeline, topic = orders_pipeline
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, unique, "orders")
    at_kill, checkpoint = _kill_mid_backfill(repo_root, stack_env, pipeline, store, topic, ROWS)
    last_id = checkpoint["id"]
    assert 0 < last_id < ROWS

    restart = _start(repo_root, stack_env, pipeline, "--once")
    _, err = restart.communicate(timeout=300)
    assert restart.returncode == 0, err

    counts = read_topic(kafka_bootstrap, topic).key_counts()
    assert set(counts) == {str(i).encode() for i in range(1, ROWS + 1)}  # no gap
    repeated = sorted(int(present(k)) for k, n in counts.items() if n > 1)
    assert max(counts.values()) <= 2
    assert all(i > last_id for i in repeated)  # nothing at or before the checkpoint twice
    assert len(repeated) <= at_kill - last_id
    assert store.load() == {
        "mode": "timestamp+incrementing",
        "ts": _ts_of(ROWS),
        "id": ROWS,
    }


def _ts_of(row: int) -> str:
    """updated_at of ``row`` as create_orders_table makes it (three rows per second)."""
    return (datetime(2024, 1, 1) + timedelta(seconds=row // 3)).isoformat()


def test_sigterm_flushes_checkpoints_and_exits_zero(
    orders_pipeline, unique, repo_root, stack_env, kafka_bootstrap
):
    pipeline, topic = orders_pipeline
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, unique, "orders")
    proc = _start(repo_root, stack_env, pipeline)
    _wait_for(lambda: _produced(kafka_bootstrap, topic) >= ROWS // 10, "records", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    checkpoint = store.load()
    assert checkpoint is not None
    produced = read_topic(kafka_bootstrap, topic).key_counts()
    # the stored position covers exactly what was produced: ids 1..checkpoint id, once each
    assert produced == {str(i).encode(): 1 for i in range(1, checkpoint["id"] + 1)}


@pytest.fixture
def s3_bucket(aws_endpoint, aws_credentials, unique):
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws_endpoint, **aws_credentials)
    s3.create_bucket(Bucket=unique)
    yield s3, unique
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=unique):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=unique, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=unique)


def _keys_by_partition(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    """Every key of ``topic``, per partition in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"order-{topic}"})
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: dict[int, list[bytes]] = {p: [] for p in parts}
        deadline = time.monotonic() + 120
        while any(len(out[p]) < ends[p] for p in parts) and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                partition = m.partition()
                if m.error() is None and partition is not None:
                    out[partition].append(present(m.key()))
        assert all(len(out[p]) == ends[p] for p in parts), "topic not read to its end"
        return out
    finally:
        c.close()


def _covered(checkpoint: dict[str, Any]) -> set[bytes]:
    """Keys of the lines an S3 checkpoint says are sent: every object up to ``after``, and
    in ``current`` the lines up to its line (object k's line n holds order o<k*lines+n-1>)."""
    done = set()
    for k in range(S3_OBJECTS):
        key = f"big/{k}.jsonl.gz"
        if checkpoint["after"] is not None and key <= checkpoint["after"]:
            last = OBJECT_LINES
        elif checkpoint["current"] and checkpoint["current"]["key"] == key:
            last = checkpoint["current"]["line"]
        else:
            continue
        done |= {f"o{k * OBJECT_LINES + n - 1}".encode() for n in range(1, last + 1)}
    return done


@pytest.mark.soak  # S3_OBJECTS x OBJECT_LINES lines (1.6 million), killed and read again: ~1 minute
def test_s3_sigkill_mid_backfill_then_restart_loses_nothing_and_repeats_only_after_checkpoint(
    s3_bucket, unique, tmp_path, repo_root, stack_env, kafka_bootstrap, aws_endpoint, new_topic
):
    s3, bucket = s3_bucket
    total = S3_OBJECTS * OBJECT_LINES
    for k in range(S3_OBJECTS):
        put_gzip_jsonl(s3, bucket, f"big/{k}.jsonl.gz", k * OBJECT_LINES, OBJECT_LINES)
    topic = new_topic(".s3orders", 3)
    source = {
        "type": "s3",
        "bucket": bucket,
        "prefix": "big/",
        "format": "jsonl.gz",
        "endpoint_url": aws_endpoint,
        "concurrency": 2,
        "topic": topic,
        "key": ["order_id"],
        # no event time: the lines' 2024 times are past the broker's 168 h retention, whose
        # next check (every 5 minutes) could delete the topic's messages while it is read
        "poll_interval": "1s",
    }
    pipeline = write_pipeline(
        tmp_path / "p.yaml", unique, kafka_bootstrap, {"orders": source}, metrics={"port": 19321}
    )
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, unique, "orders")
    at_kill, checkpoint = _kill_mid_backfill(repo_root, stack_env, pipeline, store, topic, total)
    covered = _covered(checkpoint)
    assert 0 < len(covered) < total

    restart = _start(repo_root, stack_env, pipeline, "--once")
    _, err = restart.communicate(timeout=300)
    assert restart.returncode == 0, err

    by_partition = _keys_by_partition(kafka_bootstrap, topic)
    counts = Counter(k for keys in by_partition.values() for k in keys)
    assert set(counts) == {f"o{i}".encode() for i in range(total)}  # no gap
    repeated = {k for k, n in counts.items() if n > 1}
    assert max(counts.values()) <= 2
    assert not repeated & covered  # nothing the checkpoint covers was sent twice
    assert len(repeated) <= at_kill - len(covered)
    for keys in by_partition.values():  # objects and lines in order, the restart going back once
        order = [int(k[1:]) for k in keys]
        assert sum(b < a for a, b in itertools.pairwise(order)) <= 1
    final = store.load()
    assert final is not None and final["current"] is None and final["finished"] == S3_OBJECTS
