"""The shop demo's oracle: expected results recomputed from the sources, compared key by key.

Independent of the pipeline's code on purpose: customers are re-read from the S3 objects with
the standard library's ``json`` and ``csv`` (Python decides which customers exist and their
tier: the enrichment), and every number comes from SQL in MariaDB over ``shop.orders``
(``GROUP BY`` per customer and 5-minute window for revenue, ``DENSE_RANK() OVER (PARTITION BY
window ORDER BY revenue DESC)`` for the top 10, the final row of every order for its state).
Then what the sinks hold is compared with it:

- MongoDB ``shop.revenue``: one document per (customer, window), tier, revenue, orders, items,
  largest order;
- MongoDB ``shop.top10``: exactly SQL's ranks <= 10 per window, nothing stale;
- DynamoDB ``shop-orders``: one item per order with its newest status, version and total;
- MongoDB ``shop.reviews``: per order, the rating and comment of the last valid review the demo
  posted to the gateway (re-read from the copy at ``s3://headrace-shop/reviews/posted.jsonl``
  and checked against the review schema's rules in plain Python);
- dead letters: every malformed customer line in ``shop.customers.dlq``, every order of an
  unknown customer in ``shop.orders.placed.dlq`` and every invalid review in
  ``shop.reviews.dlq``, each once (counted by position, since dead letters are at-least-once
  across a crash).

``verify(env)`` returns a ``Verdict``: one ``Check`` per comparison with its count and the first
differences.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from headrace_dev.demo.shop_data import (
    BUCKET,
    DATABASE,
    PREFIX,
    REVIEWS_KEY,
    WINDOW_MS,
    mysql_engine,
)

__all__ = ["Check", "Verdict", "compare", "expected_customers", "expected_reviews", "verify"]

MONGO_DB = "shop"
DYNAMO_TABLE = "shop-orders"
TOP_N = 10
SHOWN = 5


@dataclass
class Check:
    """One comparison: ``expected`` items, and the differences found (empty: equal)."""

    name: str
    expected: int
    got: int
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass
class Verdict:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def expected_customers(objects: Mapping[str, bytes]) -> tuple[dict[str, dict[str, str]], int]:
    """(customer id -> {name, tier}, malformed lines) from the S3 objects, by key order.

    A JSONL line is a customer if it parses as an object with a string ``customer_id``; a CSV
    row if it has exactly the header's number of fields. Anything else is malformed.
    """
    customers: dict[str, dict[str, str]] = {}
    malformed = 0
    for key in sorted(objects):
        text = objects[key].decode()
        if key.endswith(".jsonl"):
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    malformed += 1
                    continue
                if not isinstance(doc, dict) or not isinstance(doc.get("customer_id"), str):
                    malformed += 1
                    continue
                customers[doc["customer_id"]] = {"name": doc["name"], "tier": doc["tier"]}
        elif key.endswith(".csv"):
            rows = csv.reader(io.StringIO(text, newline=""))
            header = next(rows)
            for row in rows:
                if len(row) != len(header):
                    malformed += 1
                    continue
                rec = dict(zip(header, row, strict=True))
                customers[rec["customer_id"]] = {"name": rec["name"], "tier": rec["tier"]}
    return customers, malformed


REVIEW_FIELDS = {"order_id", "customer_id", "rating", "comment", "reviewed_at"}


def _valid_review(doc: object) -> bool:
    """The rules of ``examples/shop/review.schema.json``, written out in plain Python (JSON
    Schema's: an integer may be written 5.0, a boolean is not one). The gateway also refuses
    a ``reviewed_at`` that is not a time; the demo never posts one."""
    if not isinstance(doc, dict) or not set(doc) <= REVIEW_FIELDS:
        return False
    if not {"order_id", "customer_id", "rating", "reviewed_at"} <= set(doc):
        return False

    def integer(v: object) -> bool:
        if isinstance(v, float):
            return v.is_integer()
        return isinstance(v, int) and not isinstance(v, bool)

    if not (integer(doc["order_id"]) and doc["order_id"] >= 1):
        return False
    if not (integer(doc["rating"]) and 1 <= doc["rating"] <= 5):
        return False
    if not (isinstance(doc["customer_id"], str) and len(doc["customer_id"]) <= 16):
        return False
    comment = doc.get("comment", "")
    return isinstance(comment, str) and len(comment) <= 2000 and _text(doc["reviewed_at"])


def _text(v: object) -> bool:
    return isinstance(v, str) and len(v) >= 1


def expected_reviews(posted: bytes) -> tuple[dict[int, tuple[int, str | None]], int]:
    """(order id -> (rating, comment) of its last valid review, invalid reviews) from the
    JSONL copy of what the demo posted, in posting order."""
    last: dict[int, tuple[int, str | None]] = {}
    invalid = 0
    for line in posted.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if _valid_review(doc):
            last[int(doc["order_id"])] = (int(doc["rating"]), doc.get("comment"))
        else:
            invalid += 1
    return last, invalid


def _mongo_reviews(mongo_uri: str) -> dict[int, tuple[int, str | None]]:
    from pymongo import MongoClient

    client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        return {
            int(d["order_id"]): (int(d["rating"]), d.get("comment"))
            for d in client[MONGO_DB]["reviews"].find()
        }
    finally:
        client.close()


def _posted_reviews(s3: Any) -> bytes:
    """The demo's copy of the reviews it posted; none (b"") when that run posted none."""
    from botocore.exceptions import ClientError

    try:
        body: bytes = s3.get_object(Bucket=BUCKET, Key=REVIEWS_KEY)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return b""
        raise
    return body


def _read_objects(s3: Any) -> dict[str, bytes]:
    objects: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            objects[key] = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return objects


@dataclass
class Expected:
    revenue: dict[tuple[str, int], tuple[str, Decimal, int, int, Decimal]]
    top: dict[tuple[int, str], tuple[int, Decimal]]
    orders: dict[int, tuple[str, int, Decimal]]
    unknown_orders: int
    malformed: int
    customers: int


def _sql_expected(mysql_url: str, customers: dict[str, dict[str, str]]) -> Expected:
    """Every expected number, computed by MariaDB (the known customers in a temporary table)."""
    import sqlalchemy as sa

    windows_sql = (
        "SELECT o.customer_id, k.tier, FLOOR(UNIX_TIMESTAMP(o.created_at) * 1000 / :w) * :w"
        " AS window_start, SUM(o.price * o.quantity) AS revenue, COUNT(*) AS orders,"
        " SUM(o.quantity) AS items, MAX(o.price * o.quantity) AS largest"
        " FROM orders o JOIN known_customers k ON k.customer_id = o.customer_id"
        " WHERE o.quantity > 0 GROUP BY o.customer_id, k.tier, window_start"
    )
    with mysql_engine(mysql_url, DATABASE).connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TEMPORARY TABLE known_customers"
                " (customer_id VARCHAR(16) PRIMARY KEY, tier VARCHAR(16))"
            )
        )
        if customers:
            conn.execute(
                sa.text("INSERT INTO known_customers VALUES (:c, :t)"),
                [{"c": c, "t": v["tier"]} for c, v in customers.items()],
            )
        revenue = {
            (str(c), int(ws)): (str(tier), Decimal(rev), int(n), int(items), Decimal(big))
            for c, tier, ws, rev, n, items, big in conn.execute(
                sa.text(windows_sql), {"w": WINDOW_MS}
            )
        }
        top = {
            (int(ws), str(c)): (int(rnk), Decimal(rev))
            for c, ws, rev, rnk in conn.execute(
                sa.text(
                    "SELECT customer_id, window_start, revenue, rnk FROM (SELECT customer_id,"  # noqa: S608
                    " window_start, revenue, DENSE_RANK() OVER (PARTITION BY window_start"
                    " ORDER BY revenue DESC) AS rnk FROM (" + windows_sql + ") w) r WHERE rnk <= :n"
                ),
                {"w": WINDOW_MS, "n": TOP_N},
            )
        }
        orders = {
            int(i): (str(s), int(v), Decimal(t))
            for i, s, v, t in conn.execute(
                sa.text("SELECT id, status, version, price * quantity FROM orders")
            )
        }
        unknown = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM orders o LEFT JOIN known_customers k"
                " ON k.customer_id = o.customer_id WHERE k.customer_id IS NULL"
            )
        ).scalar_one()
    return Expected(revenue, top, orders, int(unknown), 0, len(customers))


def compare(name: str, expected: Mapping[Any, Any], got: Mapping[Any, Any]) -> Check:
    check = Check(name, len(expected), len(got))
    for k in sorted(set(expected) | set(got), key=repr):
        e, g = expected.get(k, "(missing)"), got.get(k, "(missing)")
        if e != g:
            check.differences.append(f"{k}: expected {e}, got {g}")
            if len(check.differences) >= SHOWN:
                break
    return check


def _mongo_results(mongo_uri: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    from pymongo import MongoClient

    client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        db = client[MONGO_DB]
        revenue = {
            (d["customer_id"], int(d["window_start"])): (
                d.get("tier"),
                Decimal(str(d["revenue"])),
                int(d["orders"]),
                int(d["items"]),
                Decimal(str(d["largest"])),
            )
            for d in db["revenue"].find()
        }
        top = {
            (int(d["window_start"]), d["customer_id"]): (int(d["rank"]), Decimal(str(d["revenue"])))
            for d in db["top10"].find()
        }
    finally:
        client.close()
    return revenue, top


def _dynamo_orders(ddb: Any) -> dict[int, tuple[str, int, Decimal]]:
    items: dict[int, tuple[str, int, Decimal]] = {}
    pages = ddb.get_paginator("scan").paginate(
        TableName=DYNAMO_TABLE,  # only the compared attributes: moto scans ~2.5x faster
        ProjectionExpression="id, #s, version, #t",
        ExpressionAttributeNames={"#s": "status", "#t": "total"},
    )
    for page in pages:
        for item in page["Items"]:
            plain = {k: next(iter(v.values())) for k, v in item.items()}
            items[int(plain["id"])] = (
                str(plain["status"]),
                int(plain["version"]),
                Decimal(str(plain["total"])),
            )
    return items


def _letters(bootstrap: str, topic: str) -> list[Any]:
    from headrace.config.model import KafkaConfig
    from headrace_cli.dlq_reader import read_dead_letters

    try:
        return list(read_dead_letters(KafkaConfig(bootstrap_servers=bootstrap), topic))
    except LookupError:
        return []


def _distinct_positions(letters: Iterable[Any]) -> int:
    return len({json.dumps(letter.position, sort_keys=True, default=str) for letter in letters})


def verify(env: Mapping[str, str], s3: Any, ddb: Any) -> Verdict:
    """Compare the sinks and dead-letter topics with the oracle (see the module doc)."""
    customers, malformed = expected_customers(_read_objects(s3))
    exp = _sql_expected(env["HEADRACE_MYSQL_URL"], customers)
    revenue, top = _mongo_results(env["HEADRACE_MONGO_URI"])
    checks = [
        compare("MongoDB shop.revenue (per customer and window)", exp.revenue, revenue),
        compare("MongoDB shop.top10 (dense_rank <= 10 per window)", exp.top, top),
        compare("DynamoDB shop-orders (newest state per order)", exp.orders, _dynamo_orders(ddb)),
    ]
    posted = _posted_reviews(s3)
    reviews, invalid_reviews = expected_reviews(posted)
    mongo_reviews = _mongo_reviews(env["HEADRACE_MONGO_URI"])
    checks.append(compare("MongoDB shop.reviews (last review per order)", reviews, mongo_reviews))
    bootstrap = env["HEADRACE_KAFKA_BOOTSTRAP"]
    bad_lines = _distinct_positions(_letters(bootstrap, "shop.customers"))
    checks.append(_count("dead letters: malformed customer lines", malformed, bad_lines))
    unknown = _distinct_positions(_letters(bootstrap, "shop.orders.placed"))
    checks.append(_count("dead letters: orders of unknown customers", exp.unknown_orders, unknown))
    bad_reviews = _distinct_positions(_letters(bootstrap, "shop.reviews"))
    checks.append(_count("dead letters: invalid reviews", invalid_reviews, bad_reviews))
    return Verdict(checks)


def _count(name: str, expected: int, got: int) -> Check:
    check = Check(name, expected, got)
    if expected != got:
        check.differences.append(f"expected {expected}, got {got}")
    return check
