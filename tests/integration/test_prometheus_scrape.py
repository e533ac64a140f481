"""The stack's real Prometheus scrapes every process of a running pipeline (file-based
discovery), and what it reports equals what is in Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from pymongo import MongoClient


def _query(prom: str, promql: str) -> list[dict]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


def _kafka_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-count"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def test_prometheus_sees_every_process_and_the_kafka_count(
    orders_pipeline,
    kafka_bootstrap: str,
    mongo_uri: str,
    unique: str,
    repo_root: Path,
    stack_env: dict[str, str],
    new_topic,
) -> None:
    prom = stack_env["HEADRACE_PROMETHEUS_URL"]
    pipeline, rows = orders_pipeline
    env = {"HEADRACE_PROMETHEUS_TARGETS": stack_env["HEADRACE_PROMETHEUS_TARGETS"]}
    run = subprocess.Popen(
        [sys.executable, "-m", "headrace.cli.main", "run", "-f", str(pipeline)],
        cwd=repo_root,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    produced = (
        f'sum(headrace_records_total{{pipeline="{unique}",kind="source",outcome="produced"}})'
    )
    up = (
        f'count(up{{job="headrace"}} == 1 and on(instance) '
        f'headrace_process_info{{pipeline="{unique}"}})'
    )
    # every record the sink wrote has its end-to-end latency observed, all in the same run
    written = f'sum(headrace_records_total{{pipeline="{unique}",kind="sink",outcome!="dlq"}})'
    e2e = f'sum(headrace_end_to_end_seconds_count{{pipeline="{unique}",kind="sink"}})'
    kept = sum(1 for r in rows if r["s"] != "cancelled" and r["q"] > 0)

    def value(promql: str) -> float:
        res = _query(prom, promql)
        return float(res[0]["value"][1]) if res else 0.0

    try:
        deadline = time.monotonic() + 120
        seen_up = produced_n = written_n = e2e_n = 0.0
        while time.monotonic() < deadline:
            seen_up, produced_n = value(up), value(produced)
            written_n, e2e_n = value(written), value(e2e)
            if seen_up >= 3 and produced_n >= len(rows) and e2e_n == written_n == kept:
                break
            time.sleep(2)
        assert seen_up == 3, f"Prometheus scrapes {seen_up} of the 3 processes"
        assert produced_n == _kafka_count(kafka_bootstrap, f"{unique}.orders.raw") == len(rows)
        assert e2e_n == written_n == kept, (e2e_n, written_n, kept)
        buckets = f'headrace_end_to_end_seconds_bucket{{pipeline="{unique}"}}'
        # timestamps are the produce times (no timestamp_field): written seconds later
        assert 0 < value(f"histogram_quantile(0.99, sum by (le) ({buckets}))") < 60
    finally:
        run.terminate()
        try:
            out, _ = run.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            out, _ = run.communicate()
        MongoClient(mongo_uri).drop_database(unique)
    assert run.returncode == 0, out[-3000:]
