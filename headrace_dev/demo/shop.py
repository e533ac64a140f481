"""The shop demo, step by step: reset, seed, run ``examples/shop/pipeline.yaml``, report.

``prepare`` forgets an earlier demo run (its topics, consumer groups, source checkpoints,
MongoDB database and DynamoDB table), seeds MariaDB and S3 (``headrace_dev.demo.shop_data``)
and posts the reviews over HTTP through the shop's gateway (``publish_reviews``: the server
``headrace gateway`` runs for ``examples/shop/gateway.yaml``, here in this process, with a
token it accepts).
``start_run`` starts ``headrace run --until-idle`` on the shipped pipeline file as a child
process (the test suite kills its children midway through it); ``report`` gathers what the
pipeline did from Kafka, MongoDB and DynamoDB. The oracle is ``headrace_dev.demo.shop_verify``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from headrace.errors import HeadraceError
from headrace_dev.demo.reset import delete_topics
from headrace_dev.demo.shop_data import ShopData, generate, seed_mysql, seed_s3
from headrace_dev.demo.shop_verify import DYNAMO_TABLE, MONGO_DB
from headrace_dev.stack import aws_client

__all__ = [
    "PIPELINE_FILE",
    "ShopReport",
    "prepare",
    "publish_reviews",
    "report",
    "reset_sinks",
    "start_run",
    "topic_records",
]

PIPELINE_FILE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "pipeline.yaml"
GATEWAY_FILE = PIPELINE_FILE.with_name("gateway.yaml")
"""The shop's HTTP gateway: its own file, since a gateway is long-lived (``publish_reviews``)."""
PIPELINE_NAME = "shop"
#: the shop pipeline's and its CDC variant's (examples/shop/pipeline_cdc.yaml, "shop-cdc")
TOPIC_PREFIXES = (
    "shop.",
    f"_headrace.{PIPELINE_NAME}.",
    f"headrace-{PIPELINE_NAME}-",
    "_headrace.shop-cdc.",
)
GROUP_PREFIXES = (f"headrace-{PIPELINE_NAME}", f"headrace.{PIPELINE_NAME}.", "headrace.shop-cdc.")
STAGE_TOPICS = (
    ("S3 customers (JSONL + CSV)", "shop.customers"),
    ("MariaDB orders placed", "shop.orders.placed"),
    ("MariaDB order changes", "shop.orders.changes"),
    ("clean: enriched orders", "shop.orders.clean"),
    ("revenue: customer x 5-min window", "shop.revenue"),
    ("top10: rank changes", "shop.top10"),
    ("order_status", "shop.orders.status"),
    ("gateway: reviews over HTTP", "shop.reviews"),
)
REVIEWS_TOPIC = "shop.reviews"
REVIEWS_PER_POST = 500


def prepare(
    env: Mapping[str, str], *, orders: int, customers: int, seed: int, say: Any = print
) -> ShopData:
    """Forget the previous demo run and seed a fresh dataset (see the module doc)."""
    data = generate(orders, customers, seed)
    say(f"demo: resetting topics, checkpoints and sinks of pipeline {PIPELINE_NAME!r}")
    _reset_kafka(env["HEADRACE_KAFKA_BOOTSTRAP"])
    reset_sinks(env)
    say(
        f"demo: seeding MariaDB shop.orders ({len(data.orders)} orders, {len(data.updates)} "
        f"later updates) and s3://headrace-shop/customers/ ({customers} customers in "
        f"{len(data.objects)} objects, {data.malformed_lines} malformed lines)"
    )
    seed_mysql(env["HEADRACE_MYSQL_URL"], data)
    seed_s3(aws_client(env, "s3"), data)
    accepted, rejected = publish_reviews(env, data.reviews)
    say(
        f"demo: posted {len(data.reviews)} reviews to the gateway "
        f"(POST /topics/{REVIEWS_TOPIC}/records, {REVIEWS_PER_POST} per request): "
        f"{accepted} accepted, {rejected} rejected into {REVIEWS_TOPIC}.dlq"
    )
    return data


def publish_reviews(env: Mapping[str, str], reviews: list[dict[str, Any]]) -> tuple[int, int]:
    """POST ``reviews`` (JSONL, in order) to the shop's gateway (``GATEWAY_FILE``), served
    from this process on a free port, with a token for ``publish:shop.reviews``; returns (accepted,
    rejected). A 429 or 503 is retried with the request's ``Idempotency-Key``, so a retry
    does not write its records twice; any other answer but 200/207 raises ``HeadraceError``."""
    import uuid

    import orjson

    from gateway.auth import mint_token
    from gateway.server import running
    from headrace.config import load_pipeline

    pipeline = load_pipeline(GATEWAY_FILE, env={**os.environ, **env})
    assert pipeline.gateway is not None, f"{GATEWAY_FILE} has no gateway: section"
    token = (
        mint_token(
            pipeline.gateway.auth, sub="webshop", scopes=[f"publish:{REVIEWS_TOPIC}"], ttl=600
        )
        if pipeline.gateway.auth is not None
        else None
    )
    accepted = rejected = 0
    with running(pipeline) as gw:
        url = f"{gw.url}/topics/{REVIEWS_TOPIC}/records"  # http://127.0.0.1:<port>
        for i in range(0, len(reviews), REVIEWS_PER_POST):
            body = b"".join(orjson.dumps(r) + b"\n" for r in reviews[i : i + REVIEWS_PER_POST])
            headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": uuid.uuid4().hex}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            answer = _post(url, body, headers, what=f"reviews {i}..")
            accepted += int(answer["accepted"])
            rejected += int(answer["rejected"])
    return accepted, rejected


def _post(url: str, body: bytes, headers: dict[str, str], *, what: str) -> dict[str, Any]:
    """POST and return the JSON answer (200/207); a 429 or 503 is retried after its
    ``Retry-After`` with the same ``Idempotency-Key`` (up to 10 tries)."""
    import urllib.error
    import urllib.request

    import orjson

    for _ in range(10):
        request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                answer: dict[str, Any] = orjson.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                reason = exc.read()[:500].decode(errors="replace")
                raise HeadraceError(
                    f"demo: the gateway answered {exc.code} to {what}: {reason}"
                ) from exc
            time.sleep(float(exc.headers.get("Retry-After") or 1))
    raise HeadraceError(f"demo: the gateway still refused {what} after 10 tries (429/503)")


def _reset_kafka(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    delete_topics(bootstrap, TOPIC_PREFIXES)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # a member killed without leaving stays in its group until its session times out (45 s)
    deadline = time.monotonic() + 90
    while True:
        listed = admin.list_consumer_groups(request_timeout=10).result()
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(GROUP_PREFIXES)]
        if not groups:
            return
        busy = []
        for group, fut in admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                fut.result()
            except Exception as exc:
                busy.append(f"{group} ({exc})")
        if not busy:
            return
        if time.monotonic() > deadline:
            raise HeadraceError(
                f"demo: cannot reset the consumer groups of an earlier demo run, still in use "
                f"after 90 s: {', '.join(busy)}; is a `headrace run` of {PIPELINE_FILE} still "
                "running? Stop it first."
            )
        time.sleep(3)


def reset_sinks(env: Mapping[str, str]) -> None:
    """Drop the demo's MongoDB database and DynamoDB table."""
    from pymongo import MongoClient

    client: Any = MongoClient(env["HEADRACE_MONGO_URI"], serverSelectionTimeoutMS=10_000)
    try:
        client.drop_database(MONGO_DB)
    finally:
        client.close()
    ddb = aws_client(env, "dynamodb")
    if DYNAMO_TABLE in ddb.list_tables().get("TableNames", []):
        ddb.delete_table(TableName=DYNAMO_TABLE)


def start_run(
    env: Mapping[str, str],
    log: IO[bytes] | int | None = None,
    *,
    pipeline: Path = PIPELINE_FILE,
    idle_timeout: float = 1200.0,
) -> subprocess.Popen[bytes]:
    """``headrace run --until-idle`` on ``pipeline`` with the stack's endpoints in its
    environment; its output goes to ``log`` (default: ours)."""
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-m",
        "headrace_cli.main",
        "-f",
        str(pipeline),
        "run",
        "--until-idle",
        "--idle-timeout",
        str(idle_timeout),
    ]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env)


@dataclass
class ShopReport:
    """What the pipeline did, read back from Kafka and the sinks."""

    topics: list[tuple[str, str, int]]  # (what, topic, records)
    dead_letters: list[tuple[str, int, str]]  # (topic, letters, a sample reason)
    top10: list[dict[str, Any]] = field(default_factory=list)  # the latest window
    orders_sample: list[dict[str, Any]] = field(default_factory=list)
    mongo_docs: dict[str, int] = field(default_factory=dict)
    dynamo_items: int = 0


def topic_records(env: Mapping[str, str], topic: str) -> int:
    """Messages in ``topic`` now (0 if it does not exist)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"], "group.id": "headrace-demo-report"}
    )
    try:
        return _records(consumer, topic)
    finally:
        consumer.close()


def _records(consumer: Any, topic: str) -> int:
    """Messages in ``topic`` (sum of high - low watermarks; 0 if it does not exist)."""
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    total = 0
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += max(0, high - low)
    return total


def report(env: Mapping[str, str]) -> ShopReport:
    """Read the results of a finished run (see ``ShopReport``)."""
    from confluent_kafka import Consumer
    from pymongo import MongoClient

    from headrace.config.model import KafkaConfig
    from headrace_cli.dlq_reader import read_dead_letters

    bootstrap = env["HEADRACE_KAFKA_BOOTSTRAP"]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "headrace-demo-report"})
    try:
        topics = [(what, t, _records(consumer, t)) for what, t in STAGE_TOPICS]
        dlqs = sorted(
            t
            for t in consumer.list_topics(timeout=10).topics
            if t.startswith("shop.") and t.endswith(".dlq")
        )
    finally:
        consumer.close()
    letters: list[tuple[str, int, str]] = []
    kafka = KafkaConfig(bootstrap_servers=bootstrap)
    for topic in dlqs:
        try:
            found = list(read_dead_letters(kafka, topic))
        except LookupError:
            continue
        if found:
            sample = f"{found[0].stage}: {found[0].error_class}: {found[0].message}"
            letters.append((topic, len(found), sample))
    rep = ShopReport(topics, letters)
    client: Any = MongoClient(env["HEADRACE_MONGO_URI"], serverSelectionTimeoutMS=10_000)
    try:
        db = client[MONGO_DB]
        rep.mongo_docs = {
            name: db[name].count_documents({}) for name in ("revenue", "top10", "reviews")
        }
        latest = db["top10"].find_one(sort=[("window_start", -1)])
        if latest is not None:
            rows = db["top10"].find({"window_start": latest["window_start"]})
            rep.top10 = sorted(rows, key=lambda d: (d["rank"], d["customer_id"]))
    finally:
        client.close()
    ddb = aws_client(env, "dynamodb")
    # DynamoDB's own item count (refreshed every few hours on AWS; exact on moto), not a scan
    rep.dynamo_items = int(ddb.describe_table(TableName=DYNAMO_TABLE)["Table"]["ItemCount"])
    items = ddb.scan(TableName=DYNAMO_TABLE, Limit=3)["Items"]
    rep.orders_sample = [{k: next(iter(v.values())) for k, v in it.items()} for it in items]
    return rep
