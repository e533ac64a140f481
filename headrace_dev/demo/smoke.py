"""The smoke pipeline: one pass through every component of the local stack, checked.

MariaDB rows and an S3 JSONL object are read, order events go to Kafka keyed by customer, the
Faust smoke app (``headrace_dev.faust_smoke``) counts orders per customer in a changelog-backed
table,
the final counts are upserted into FerretDB (MongoDB protocol) and DynamoDB (moto), and both
are compared with the same counts computed by SQL in MariaDB. ``run_smoke`` returns a report
and raises ``SmokeFailure`` on any difference.

This stands in for the full shop demo until the producers, stages and sinks land.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from headrace.errors import HeadraceError

__all__ = ["SmokeFailure", "SmokeReport", "run_smoke"]

DB = "headrace_demo"
BUCKET = "headrace-demo"
TOPIC_IN = "headrace_dev.demo.orders"
TOPIC_OUT = "headrace_dev.demo.order_counts"
TABLE = "headrace-demo-order-counts"


class SmokeFailure(HeadraceError):
    """The smoke pipeline ran but its results differ from the SQL oracle."""


@dataclass
class SmokeReport:
    orders: int
    customers: int
    produced: int
    counted: int
    mongo_docs: int
    dynamo_items: int
    sample: list[dict[str, Any]] = field(default_factory=list)


def run_smoke(
    env: dict[str, str], *, orders: int, customers: int, seed: int, timeout: float = 180.0
) -> SmokeReport:
    """Run the smoke pipeline against the stack described by ``env`` (the stack's env file)."""
    rng = random.Random(seed)
    rows = [
        (i, f"c{rng.randrange(customers):04d}", Decimal(rng.randrange(100, 99999)) / 100)
        for i in range(1, orders + 1)
    ]
    _seed_mysql(env, rows)
    _seed_s3(env, customers)
    expected = _sql_counts(env)
    _reset_topics(env)
    produced = _produce(env)
    counts = _run_worker(env, expected, timeout)
    mongo_docs = _to_mongo(env, counts)
    dynamo_items = _to_dynamo(env, counts)
    got_mongo, got_dynamo = _read_back(env)
    for name, got in (("kafka", counts), ("mongodb", got_mongo), ("dynamodb", got_dynamo)):
        if got != expected:
            diff = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
            k = diff[0]
            raise SmokeFailure(
                f"{name} differs from SQL for {len(diff)} customer(s); first: "
                f"{k}: expected {expected.get(k)}, got {got.get(k)}"
            )
    sample = [{"customer_id": k, "orders": expected[k]} for k in sorted(expected)[:5]]
    return SmokeReport(
        orders, customers, produced, sum(counts.values()), mongo_docs, dynamo_items, sample
    )


def _engine(env: dict[str, str], db: str = "") -> Any:
    from headrace_dev.demo.shop_data import mysql_engine

    return mysql_engine(env["HEADRACE_MYSQL_URL"], db)


def _seed_mysql(env: dict[str, str], rows: list[tuple[int, str, Decimal]]) -> None:
    import sqlalchemy as sa

    with _engine(env).begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {DB}"))
    with _engine(env, DB).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS orders"))
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id VARCHAR(16) NOT NULL, "
                "amount DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :c, :a, UTC_TIMESTAMP(6))"),
            [{"id": i, "c": c, "a": a} for i, c, a in rows],
        )


def _sql_counts(env: dict[str, str]) -> dict[str, int]:
    import sqlalchemy as sa

    with _engine(env, DB).connect() as conn:
        result = conn.execute(
            sa.text("SELECT customer_id, COUNT(*) FROM orders GROUP BY customer_id")
        )
        return {str(c): int(n) for c, n in result}


def _s3(env: dict[str, str], service: str) -> Any:
    from headrace_dev.stack import aws_client

    return aws_client(env, service)


def _seed_s3(env: dict[str, str], customers: int) -> None:
    s3 = _s3(env, "s3")
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    body = b"".join(
        orjson.dumps({"customer_id": f"c{i:04d}", "tier": "gold" if i % 5 == 0 else "standard"})
        + b"\n"
        for i in range(customers)
    )
    s3.put_object(Bucket=BUCKET, Key="customers/customers.jsonl", Body=body)


def _reset_topics(env: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from headrace_dev.demo.reset import delete_topics

    delete_topics(env["HEADRACE_KAFKA_BOOTSTRAP"], ("headrace_dev.demo.", "headrace-demo-"), 30)
    admin = AdminClient({"bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"]})
    for fut in admin.create_topics([NewTopic(TOPIC_IN, 2, 1), NewTopic(TOPIC_OUT, 2, 1)]).values():
        fut.result()


def _produce(env: dict[str, str]) -> int:
    import sqlalchemy as sa
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"],
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    n = 0
    with _engine(env, DB).connect() as conn:
        result = conn.execution_options(stream_results=True).execute(
            sa.text("SELECT id, customer_id, amount, created_at FROM orders ORDER BY id")
        )
        for oid, cust, amount, created in result:
            value = orjson.dumps(
                {
                    "id": oid,
                    "customer_id": cust,
                    "amount": str(amount),
                    "created_at": created.isoformat(),
                }
            )
            producer.produce(TOPIC_IN, key=cust.encode(), value=value)
            producer.poll(0)
            n += 1
    if producer.flush(30) != 0:
        raise SmokeFailure("Kafka did not acknowledge every order within 30 s")
    return n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_worker(env: dict[str, str], expected: dict[str, int], timeout: float) -> dict[str, int]:
    from confluent_kafka import Consumer

    log = Path(tempfile.mkstemp(prefix="headrace-demo-worker-", suffix=".log")[1])
    app_id = f"headrace-demo-{int(time.time())}"
    cmd = [
        sys.executable,
        "-m",
        "headrace_dev.faust_smoke",
        "--bootstrap",
        env["HEADRACE_KAFKA_BOOTSTRAP"],
        "--app-id",
        app_id,
        "--source",
        TOPIC_IN,
        "--sink",
        TOPIC_OUT,
        "--partitions",
        "2",
        "--web-port",
        str(_free_port()),
    ]
    consumer = Consumer(
        {
            "bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"],
            "group.id": f"{app_id}-reader",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([TOPIC_OUT])
    counts: dict[str, int] = {}
    with open(log, "wb") as out:
        worker = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while counts != expected:
                if worker.poll() is not None or time.monotonic() > deadline:
                    what = "exited" if worker.poll() is not None else "did not finish in time"
                    raise SmokeFailure(f"the Faust worker {what}; see its log: {log}")
                for msg in consumer.consume(1000, 0.5):
                    if msg.error() is None:
                        key = (msg.key() or b"").decode()
                        counts[key] = max(counts.get(key, 0), int(msg.value() or b"0"))
        finally:
            consumer.close()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    return counts


def _to_mongo(env: dict[str, str], counts: dict[str, int]) -> int:
    from pymongo import MongoClient, UpdateOne

    client: Any = MongoClient(env["HEADRACE_MONGO_URI"])
    try:
        coll = client[DB]["order_counts"]
        coll.delete_many({})
        ops = [
            UpdateOne({"_id": k}, {"$set": {"orders": v}}, upsert=True) for k, v in counts.items()
        ]
        coll.bulk_write(ops, ordered=False)
        return int(coll.count_documents({}))
    finally:
        client.close()


def _to_dynamo(env: dict[str, str], counts: dict[str, int]) -> int:
    ddb = _s3(env, "dynamodb")
    if TABLE in ddb.list_tables()["TableNames"]:
        ddb.delete_table(TableName=TABLE)
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "customer_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "customer_id", "AttributeType": "S"}],
    )
    items = [
        {"PutRequest": {"Item": {"customer_id": {"S": k}, "orders": {"N": str(v)}}}}
        for k, v in counts.items()
    ]
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={TABLE: items[i : i + 25]})
    return int(ddb.scan(TableName=TABLE, Select="COUNT")["Count"])


def _read_back(env: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    from pymongo import MongoClient

    client: Any = MongoClient(env["HEADRACE_MONGO_URI"])
    try:
        mongo = {d["_id"]: int(d["orders"]) for d in client[DB]["order_counts"].find()}
    finally:
        client.close()
    ddb = _s3(env, "dynamodb")
    dynamo: dict[str, int] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
        for item in page["Items"]:
            dynamo[item["customer_id"]["S"]] = int(item["orders"]["N"])
    return mongo, dynamo
