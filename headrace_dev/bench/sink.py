"""``headrace bench sink``: each sink against its raw client on the same documents.

Per sink, in one run: N JSON records go to a fresh topic; the baseline writes the same
documents (already decoded, in memory) with the raw client to a fresh collection/table; then
the whole sink (consume, decode, batch, write, commit) drains the topic into another fresh
one; then the baseline writes them once more, to a third. The baseline's rate is over both of
its runs: whichever side runs second pays for the first one's leftovers (FerretDB's SQLite
file), measured at 5-10% on MongoDB, so a baseline run only before ours favoured the
baseline, and one only after would favour us. Both rates are records per second over wall
time; the sink's clock starts at the first record it reads (the consumer group join, ~1 s,
is a start-up cost, not throughput) and stops at its last commit.

- MongoDB: pymongo ``bulk_write`` of ReplaceOne upserts vs the sink in ``write: replace``
  mode. Both send at most ``MAX_OPS`` operations per request (the sink's request size), so
  the ratio measures our overhead, not the request size. Both send one request at a time
  (the sink's default ``concurrency``: more gained nothing on FerretDB here).
- DynamoDB: ``batch_write_item`` in 25s, one request at a time (floats already Decimal), vs
  the sink without a version field (the same BatchWriteItem path, with its default of up to
  8 requests in flight; the guarded path uses PutItem).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any
from uuid import uuid4

import orjson

from connectors.dynamodb import DynamoDBSink, dynamo_client
from connectors.dynamodb_writer import DynamoWriter
from connectors.mongodb import MongoSink, mongo_collection
from connectors.mongodb_writer import MAX_OPS, MongoWriter
from connectors.records import SinkWriter
from connectors.runner import SinkRunner
from connectors.sinkmetrics import SinkMetrics
from headrace.config import KafkaConfig
from headrace.kafka_clients import ensure_topics, make_consumer, make_producer
from headrace_dev.bench.common import BenchFigure, peak_rss_mb

__all__ = ["run"]


def _docs(n: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"o{i:07d}",
            "customer_id": f"c{i % 997}",
            "price": round(i * 0.37, 2),
            "quantity": i % 9 + 1,
            "status": "paid",
            "updated_at": 1_700_000_000 + i,
        }
        for i in range(n)
    ]


def _topic(kafka: KafkaConfig, docs: list[dict[str, Any]]) -> str:
    topic = f"bench.sink.{uuid4().hex[:8]}"
    ensure_topics(kafka, {topic: 3})
    producer = make_producer(kafka)
    for d in docs:
        producer.produce(topic, value=orjson.dumps(d), key=d["order_id"].encode())
        producer.poll(0)
    producer.flush(60)
    return topic


def _ours(kafka: KafkaConfig, topic: str, writer: SinkWriter, n: int, batch: int) -> float:
    consumer: Any = make_consumer(kafka, f"{topic}.ours")
    producer: Any = make_producer(kafka)
    runner = SinkRunner(
        name="bench",
        topic=topic,
        consumer=consumer,
        writer=writer,
        producer=producer,
        metrics=SinkMetrics("bench", writer.name),
        batch_size=batch,
        batch_bytes=16_000_000,
        linger=0.1,
    )
    runner.run(max_idle_polls=4)
    # from the first record read (group join excluded) to the last commit
    elapsed = runner.last_commit - (runner.first_read or runner.last_commit)
    done = sum(runner.committed.values())
    if done != n:
        raise RuntimeError(f"bench: the sink committed {done} of {n} records")
    return n / elapsed


def _mongo(env: dict[str, str], kafka: KafkaConfig, n: int) -> BenchFigure:
    from pymongo import ReplaceOne

    docs = _docs(n)
    topic = _topic(kafka, docs)
    base = MongoSink.model_validate(
        {
            "type": "mongodb",
            "from": topic,
            "uri": env["HEADRACE_MONGO_URI"],
            "database": "headrace_bench",
            "collection": f"raw_{uuid4().hex[:8]}",
            "id": ["order_id"],
            "write": "replace",
            "batch_size": 1000,
        }
    )
    client, raw = mongo_collection(base)
    after = base.model_copy(update={"collection": f"raw_{uuid4().hex[:8]}"})
    raw_after = client[after.database][after.collection]
    ours_conf = base.model_copy(update={"collection": f"ours_{uuid4().hex[:8]}"})
    _client2, ours_coll = mongo_collection(ours_conf)

    def baseline_seconds(coll: Any) -> float:
        start = time.perf_counter()
        for s in range(0, n, MAX_OPS):
            coll.bulk_write(
                [
                    ReplaceOne({"_id": d["order_id"]}, {**d, "_id": d["order_id"]}, upsert=True)
                    for d in docs[s : s + MAX_OPS]
                ],
                ordered=False,
            )
        return time.perf_counter() - start

    try:  # warm up the connection pool first, as the sink's writer does on open()
        raw.bulk_write([ReplaceOne({"_id": "warmup"}, {"_id": "warmup"}, upsert=True)])
        before_s = baseline_seconds(raw)
        ours = _ours(kafka, topic, MongoWriter("mongo", ours_conf, ours_coll), n, 1000)
        baseline = 2 * n / (before_s + baseline_seconds(raw_after))
    finally:
        for name in (base.collection, after.collection, ours_conf.collection):
            client[base.database].drop_collection(name)
        client.close()
        _client2.close()
    return BenchFigure(
        "sink.mongodb",
        n,
        ours,
        "pymongo bulk_write upserts",
        baseline,
        peak_rss_mb(),
        note=f"FerretDB, {MAX_OPS} ops per request, one request at a time; the baseline ran "
        "before and after ours (rate over both)",
    )


def _dynamo(env: dict[str, str], kafka: KafkaConfig, n: int) -> BenchFigure:
    docs = _docs(n)
    topic = _topic(kafka, docs)
    conf = DynamoDBSink.model_validate(
        {
            "type": "dynamodb",
            "from": topic,
            "table": f"bench_{uuid4().hex[:8]}",
            "partition_key": "order_id",
            "endpoint_url": env["HEADRACE_AWS_ENDPOINT"],
            "region": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID", "testing"),
            "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "create": True,
            "batch_size": 1000,
        }
    )
    ours_conf = conf.model_copy(update={"table": f"bench_{uuid4().hex[:8]}"})
    client = dynamo_client(conf)
    DynamoWriter("raw", conf, client).open()  # creates the baseline table
    items = [
        {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in d.items()} for d in docs
    ]
    after = conf.model_copy(update={"table": f"bench_{uuid4().hex[:8]}"})
    DynamoWriter("raw", after, client).open()

    def baseline_seconds(table: str) -> float:
        start = time.perf_counter()
        for s in range(0, n, 25):
            client.batch_write_item(
                RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[s : s + 25]]}
            )
        return time.perf_counter() - start

    try:  # warm up (connection, request models) so neither side pays it in its timing
        client.batch_write_item(
            RequestItems={conf.table: [{"PutRequest": {"Item": it}} for it in items[:25]]}
        )
        before_s = baseline_seconds(conf.table)
        ours = _ours(kafka, topic, DynamoWriter("dynamodb", ours_conf, client), n, 1000)
        baseline = 2 * n / (before_s + baseline_seconds(after.table))
    finally:
        for table in (conf.table, after.table, ours_conf.table):
            try:
                client.delete_table(TableName=table)
            except Exception:  # noqa: S110 - cleanup only
                pass
    return BenchFigure(
        "sink.dynamodb",
        n,
        ours,
        "boto3 batch_write_item (25s)",
        baseline,
        peak_rss_mb(),
        note=f"moto; the sink sends up to {ours_conf.concurrency} requests at once, "
        "the baseline one; the baseline ran before and after ours (rate over both)",
    )


def run(env: dict[str, str], quick: bool) -> list[BenchFigure]:
    """Both sink figures; ``quick`` keeps the whole run under a minute."""
    kafka = KafkaConfig.model_validate({"bootstrap_servers": env["HEADRACE_KAFKA_BOOTSTRAP"]})
    return [
        _mongo(env, kafka, 5000 if quick else 50_000),
        _dynamo(env, kafka, 4000 if quick else 50_000),
    ]
