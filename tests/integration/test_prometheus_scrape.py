"""The stack's real Prometheus scrapes every process of a running pipeline (file-based
discovery), and what it reports equals what is in Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient


def test_prometheus_sees_every_process_and_the_kafka_count(
    orders_pipeline,
    promql,
    kafka_count,
    mongo_uri: str,
    unique: str,
    repo_root: Path,
    stack_env: dict[str, str],
    new_topic,
) -> None:
    pipeline, rows = orders_pipeline
    env = {"HEADRACE_PROMETHEUS_TARGETS": stack_env["HEADRACE_PROMETHEUS_TARGETS"]}
    run = subprocess.Popen(
        [sys.executable, "-m", "headrace_cli.main", "run", "-f", str(pipeline)],
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

    value = promql
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
        assert produced_n == kafka_count(f"{unique}.orders.raw") == len(rows)
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
