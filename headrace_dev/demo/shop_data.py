"""The shop dataset: customers as S3 objects, orders as MariaDB rows, deterministic by seed.

``generate(orders, customers, seed)`` builds everything in memory; ``seed_mysql`` and
``seed_s3`` write it out (replacing an earlier demo's table and objects). What it contains,
on purpose:

- customers ``c00001`` ... split over JSONL and CSV objects under ``customers/`` (CSV with a
  quoted name holding the delimiter); about 1 in 60 customer lines is malformed (truncated
  JSON, a CSV row with an extra field) and a few lines are not customers at all. A customer
  whose line is malformed is unknown to the pipeline;
- orders placed over a time span that is a whole number of ``WINDOW_MS`` windows, ending half
  an hour ago on a window boundary, in id order; about 1% name a customer that does not exist,
  about 3% have quantity 0; customers are Zipf-like so a few are big (a meaningful top 10), and
  prices repeat so revenue ties happen;
- later updates: after the inserts, a third of the orders are shipped (version 2), some of
  those delivered (version 3), and some cancelled (version 2), each with a later ``updated_at``;
- reviews the web shop posts to the gateway (``shop.reviews``): about 1 order in 8 gets one,
  1 in 10 of those a second, edited one later (it replaces the first), and about 1 in 40 is
  invalid on purpose (a rating of 0, 6 or "5", no order id), for the gateway's dead letters.
  They come from their own random stream, so the orders of a seed do not depend on them.

Nothing here reads the pipeline's output: the oracle (``headrace_dev.demo.shop_verify``) recomputes
the expected results from these sources independently.
"""

from __future__ import annotations

import csv
import io
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

__all__ = [
    "BUCKET",
    "DATABASE",
    "PREFIX",
    "REVIEWS_KEY",
    "WINDOW_MS",
    "Order",
    "ShopData",
    "generate",
    "mysql_engine",
    "seed_mysql",
    "seed_s3",
]

DATABASE = "shop"
BUCKET = "headrace-shop"
PREFIX = "customers/"
REVIEWS_KEY = "reviews/posted.jsonl"
"""Where the demo keeps a copy of the reviews it posted (in ``BUCKET``), for the oracle; no
source reads it."""
WINDOW_MS = 5 * 60_000
"""The revenue window of ``examples/shop/pipeline.yaml`` (5 minutes); the data is laid out on it."""

TIERS = (("bronze", 50), ("silver", 30), ("gold", 15), ("platinum", 5))
SKUS = tuple(f"sku-{i:03d}" for i in range(1, 41))


@dataclass(frozen=True)
class Order:
    """One row of ``shop.orders`` as first inserted (status ``placed``, version 1)."""

    id: int
    customer_id: str
    sku: str
    quantity: int
    price: Decimal
    created_ms: int


@dataclass
class ShopData:
    """Everything the demo seeds; see the module doc."""

    seed: int
    orders: list[Order]
    updates: list[tuple[int, str, int, int]]  # (order id, status, version, updated_ms)
    objects: dict[str, bytes]  # S3 key under PREFIX -> body
    customers: int
    malformed_lines: int
    span: tuple[int, int]  # [first window start, last window end) in epoch ms
    unknown_customers: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)  # in posting order


def generate(orders: int, customers: int, seed: int, now_ms: int | None = None) -> ShopData:
    """The dataset for ``orders`` orders and ``customers`` customers (deterministic by seed,
    apart from its position in time, which follows ``now_ms``)."""
    if orders < 1 or customers < 1:
        raise ValueError(f"orders and customers must be >= 1 (got {orders}, {customers})")
    rng = random.Random(seed)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    end = (now - 30 * 60_000) // WINDOW_MS * WINDOW_MS
    windows = min(24, max(4, -(-orders * 150 // WINDOW_MS)))  # ~150 ms per order, 4..24
    start = end - windows * WINDOW_MS
    ids = [f"c{i:05d}" for i in range(1, customers + 1)]
    objects, malformed = _customer_objects(rng, ids)
    unknown = [f"c{90000 + i:05d}" for i in range(max(1, customers // 50))]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(ids))]
    rows: list[Order] = []
    step = (end - start - 1000) / orders
    for i in range(orders):
        customer = rng.choice(unknown) if rng.random() < 0.01 else rng.choices(ids, weights)[0]
        rows.append(
            Order(
                id=i + 1,
                customer_id=customer,
                sku=rng.choice(SKUS),
                quantity=0 if rng.random() < 0.03 else rng.randint(1, 5),
                price=Decimal(rng.randrange(100, 25000, 25)) / 100,
                created_ms=start + int(i * step),
            )
        )
    updates: list[tuple[int, str, int, int]] = []
    for o in rows:
        r = rng.random()
        later = o.created_ms + rng.randint(60_000, 10 * 60_000)  # all before now
        if r < 0.05:
            updates.append((o.id, "cancelled", 2, later))
        elif r < 0.35:
            updates.append((o.id, "shipped", 2, later))
            if rng.random() < 0.5:
                updates.append((o.id, "delivered", 3, later + rng.randint(60_000, 9 * 60_000)))
    return ShopData(
        seed=seed,
        orders=rows,
        updates=updates,
        objects=objects,
        customers=customers,
        malformed_lines=malformed,
        span=(start, end),
        unknown_customers=unknown,
        reviews=_reviews(random.Random(f"reviews-{seed}"), rows),
    )


def _reviews(rng: random.Random, orders: list[Order]) -> list[dict[str, Any]]:
    """The reviews of ``orders``, in posting order (see the module doc)."""
    first: list[dict[str, Any]] = []
    edits: list[dict[str, Any]] = []
    words = ("great", "late", "as described", "broken box", "fast", "would buy again")
    for o in orders:
        if rng.random() >= 1 / 8:
            continue
        at = o.created_ms + rng.randint(2 * 60_000, 20 * 60_000)
        review: dict[str, Any] = {
            "order_id": o.id,
            "customer_id": o.customer_id,
            "rating": rng.randint(1, 5),
            "comment": rng.choice(words),
            "reviewed_at": _iso(at),
        }
        if rng.random() < 1 / 40:
            bad = rng.choice(("zero", "six", "text", "no id"))
            if bad == "no id":
                del review["order_id"]
            else:
                review["rating"] = {"zero": 0, "six": 6, "text": "5"}[bad]
        first.append(review)
        if rng.random() < 1 / 10:
            edited = {
                **review,
                "rating": rng.randint(1, 5),
                "comment": "edited: " + rng.choice(words),
            }
            edited["reviewed_at"] = _iso(at + rng.randint(60_000, 30 * 60_000))
            edits.append(edited)
    return first + edits


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _customer_objects(rng: random.Random, ids: list[str]) -> tuple[dict[str, bytes], int]:
    """JSONL objects for the first half of ``ids``, CSV for the rest; (objects, malformed)."""
    per_object = max(1, -(-len(ids) // 6))
    chunks = [ids[i : i + per_object] for i in range(0, len(ids), per_object)]
    objects: dict[str, bytes] = {}
    malformed = 0
    for n, chunk in enumerate(chunks):
        people = [_customer(rng, cid) for cid in chunk]
        if n < (len(chunks) + 1) // 2:
            lines = []
            for p in people:
                line = orjson.dumps(p)
                if rng.random() < 1 / 60:
                    line, malformed = line[: len(line) // 2], malformed + 1  # truncated
                lines.append(line)
            if n == 0:
                lines.insert(len(lines) // 2, b"this line is not JSON")
                malformed += 1
            objects[f"{PREFIX}part-{n:03d}.jsonl"] = b"\n".join(lines) + b"\n"
        else:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["customer_id", "name", "tier", "city"])
            for p in people:
                row = [p["customer_id"], p["name"], p["tier"], p["city"]]
                if rng.random() < 1 / 60:
                    row, malformed = [*row, "unexpected"], malformed + 1  # extra field
                writer.writerow(row)
            objects[f"{PREFIX}part-{n:03d}.csv"] = out.getvalue().encode()
    return objects, malformed


def _customer(rng: random.Random, cid: str) -> dict[str, Any]:
    first = rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Donald", "Frances"])
    last = rng.choice(["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Knuth"])
    name = f"{last}, {first}" if rng.random() < 0.2 else f"{first} {last}"  # a quoted CSV field
    tier = rng.choices([t for t, _ in TIERS], [w for _, w in TIERS])[0]
    city = rng.choice(["Lyon", "Osaka", "Lagos", "Lima", "Perth", "Quebec"])
    return {"customer_id": cid, "name": name, "tier": tier, "city": city}


def mysql_engine(mysql_url: str, database: str = "") -> Any:
    """An SQLAlchemy engine on the server of ``mysql_url`` (any database), UTC sessions."""
    import sqlalchemy as sa

    base = mysql_url.rsplit("/", 1)[0]
    return sa.create_engine(
        f"{base}/{database}", connect_args={"init_command": "SET time_zone = '+00:00'"}
    )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def seed_mysql(mysql_url: str, data: ShopData) -> None:
    """(Re)create ``shop.orders``: insert every order, then apply the later updates."""
    import sqlalchemy as sa

    with mysql_engine(mysql_url).begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`"))
    with mysql_engine(mysql_url, DATABASE).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS orders"))
        conn.execute(
            sa.text(
                "CREATE TABLE orders ("
                " id BIGINT PRIMARY KEY,"
                " customer_id VARCHAR(16) NOT NULL,"
                " sku VARCHAR(16) NOT NULL,"
                " quantity INT NOT NULL,"
                " price DECIMAL(10,2) NOT NULL,"
                " status VARCHAR(16) NOT NULL,"
                " version INT NOT NULL,"
                " created_at DATETIME(3) NOT NULL,"
                " updated_at DATETIME(3) NOT NULL,"
                " KEY (updated_at, id))"
            )
        )
        insert = sa.text("INSERT INTO orders VALUES (:id, :c, :sku, :q, :p, 'placed', 1, :t, :t)")
        batch = 5000
        for i in range(0, len(data.orders), batch):
            conn.execute(
                insert,
                [
                    {
                        "id": o.id,
                        "c": o.customer_id,
                        "sku": o.sku,
                        "q": o.quantity,
                        "p": o.price,
                        "t": _dt(o.created_ms),
                    }
                    for o in data.orders[i : i + batch]
                ],
            )
    with mysql_engine(mysql_url, DATABASE).begin() as conn:
        update = sa.text(
            "UPDATE orders SET status = :s, version = :v, updated_at = :t WHERE id = :id"
        )
        for i in range(0, len(data.updates), batch):
            conn.execute(
                update,
                [
                    {"id": oid, "s": status, "v": version, "t": _dt(ms)}
                    for oid, status, version, ms in data.updates[i : i + batch]
                ],
            )


def seed_s3(s3: Any, data: ShopData) -> None:
    """(Re)fill ``s3://headrace-shop/customers/`` with the customer objects, and keep the
    reviews the demo posts at ``REVIEWS_KEY`` (JSONL, posting order) for the oracle."""
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in names:
        s3.create_bucket(Bucket=BUCKET)
    old = s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])
    if old:
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in old]})
    for key, body in sorted(data.objects.items()):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    posted = b"".join(orjson.dumps(r) + b"\n" for r in data.reviews)
    s3.put_object(Bucket=BUCKET, Key=REVIEWS_KEY, Body=posted)
