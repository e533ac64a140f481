"""Issue #15, defects 1 and 2, on the real stack, written from their description.

Orders keyed by ``order_id`` on a 2-partition topic; ``revenue`` aggregates them per
``customer_id`` per minute (the worker repartitions by customer: check says so); ``top`` keeps
the top 1 customer per window with running values (``emit: updates``); a MongoDB sink with
``id: [window_start, customer_id]`` and a DynamoDB sink with ``partition_key: window_start,
sort_key: customer_id`` keep the top 1.

1. customer 7's 10.00 on partition 0 and 20.00 on partition 1 in the same minute must give
   one row 30.00/2 (it gave two rows, 10.00/1 and 20.00/1, and a sink kept either);
2. when customer 8's 40.00 arrives, the top 1 moves from 7 to 8: the tombstone of 7 must
   delete 7 from both sinks (it matched nothing, and both kept 7 and 8).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import orjson
from confluent_kafka import Producer
from pymongo import MongoClient

from streams.output_log import partition_for
from streams.testing import WorkerProcess

MINUTE = 60_000
PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
sources:
  orders:
    type: s3            # never run: it declares how {u}.orders is keyed
    bucket: unused
    format: jsonl
    topic: {u}.orders
    key: [order_id]
stages:
  revenue:
    from: {u}.orders
    to: {u}.revenue
    aggregate:
      group_by: [customer_id]
      window: {{type: tumbling, size: 1m, grace: 10m}}
      measures: {{revenue: sum(amount), orders: count()}}
      emit: updates
  top:
    from: {u}.revenue
    to: {u}.top
    rank: {{partition_by: [window_start], order_by: [revenue desc], function: row_number, limit: 1}}
sinks:
  revenue_mongo:
    type: mongodb
    from: {u}.revenue
    uri: {mongo}
    database: {u}
    collection: revenue
    id: [customer_id, window_start]
  top_mongo:
    type: mongodb
    from: {u}.top
    uri: {mongo}
    database: {u}
    collection: top
    id: [window_start, customer_id]
    write: delete-on-tombstone
  top_dynamo:
    type: dynamodb
    from: {u}.top
    table: {u}-top
    partition_key: window_start
    sort_key: customer_id
    create: true
    endpoint_url: {aws}
    region: us-east-1
    aws_access_key_id: testing
    aws_secret_access_key: testing
"""

HEADRACE = [sys.executable, "-m", "headrace_cli.main"]


def _order_on(partition: int, customer: int, amount: str, start: int) -> dict[str, Any]:
    """An order of ``customer`` whose order_id lands on ``partition`` of 2."""
    for order_id in range(start, start + 1000):
        if partition_for(str(order_id).encode(), 2) == partition:
            return {"order_id": order_id, "customer_id": customer, "amount": amount}
    raise AssertionError("no order id for that partition")


def _until(what: str, probe: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"{what}: not reached in {timeout:.0f}s (last: {last!r})")


def test_aggregate_repartitions_and_rank_tombstones_reach_named_ids(
    tmp_path: Path,
    unique: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    mongo_uri: str,
    aws_endpoint: str,
    repo_root: Path,
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(u=unique, bootstrap=kafka_bootstrap, mongo=mongo_uri, aws=aws_endpoint)
    )
    check = subprocess.run(
        [*HEADRACE, "check", "-f", str(pipeline)], capture_output=True, text=True, cwd=repo_root
    )
    assert check.returncode == 0, check.stderr
    assert "repartitions it by group_by" in check.stdout
    topic = new_topic(".orders", partitions=2)
    assert topic == f"{unique}.orders"
    window = (int(time.time() * 1000) - 3_600_000) // MINUTE * MINUTE
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def produce(order: dict[str, Any], partition: int) -> None:
        key = str(order["order_id"]).encode()
        assert partition_for(key, 2) == partition
        producer.produce(
            topic, orjson.dumps(order), key, partition=partition, timestamp=window + 1000
        )
        assert producer.flush(30) == 0

    worker = WorkerProcess(pipeline, log=tmp_path / "worker.log", cwd=repo_root)
    sinks = [
        subprocess.Popen(
            [*HEADRACE, "sink", name, "-f", str(pipeline), "--metrics-port", "0"],
            cwd=repo_root,
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name in ("revenue_mongo", "top_mongo", "top_dynamo")
    ]
    mongo: Any = MongoClient(mongo_uri)
    dynamo = boto3.resource(
        "dynamodb",
        endpoint_url=aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        produce(_order_on(0, 7, "10.00", 1), 0)
        produce(_order_on(1, 7, "20.00", 1), 1)

        def revenue_of_7() -> Any:
            docs = list(mongo[unique]["revenue"].find({"customer_id": 7}))
            return docs if docs and docs[0].get("orders") == 2 else None

        (row,) = _until("one row 30.00/2 for customer 7", revenue_of_7)
        assert Decimal(row["revenue"]) == Decimal("30.00")
        assert row["_id"] == {"customer_id": 7, "window_start": window}

        def top_is(customer: int) -> Callable[[], Any]:
            def probe() -> Any:
                docs = list(mongo[unique]["top"].find())
                try:
                    items = dynamo.Table(f"{unique}-top").scan()["Items"]
                except Exception:
                    return None
                mine = [d["customer_id"] for d in docs]
                theirs = [int(i["customer_id"]) for i in items]
                return (mine, theirs) if mine == [customer] and theirs == [customer] else None

            return probe

        _until("customer 7 on top in MongoDB and DynamoDB", top_is(7))
        produce(_order_on(0, 8, "40.00", 2000), 0)
        _until("customer 8 alone on top in MongoDB and DynamoDB (7 deleted)", top_is(8))
    finally:
        worker.stop()
        for proc in sinks:
            proc.terminate()
            proc.wait(60)
        mongo.drop_database(unique)
        mongo.close()
