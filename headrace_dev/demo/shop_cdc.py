"""The shop demo's change-data-capture variant (``headrace demo --cdc``).

``examples/shop/pipeline_cdc.yaml`` reads MariaDB's ``shop.orders`` with a ``mysql_cdc``
source (flat records, deletes as tombstones) into MongoDB ``shop.orders_cdc``. The demo runs
it to idle twice: first over the seeded table (the snapshot), then after ``change_orders``
deleted, updated and inserted orders (the binlog). ``verify_cdc`` then compares the
collection with ``SELECT *`` of the table, value by value as the documented rules write
them (DECIMAL as exact text, DATETIME as ISO-8601 without an offset): the oracle is the
table itself, read with PyMySQL, never the pipeline's output.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from headrace_dev.demo.shop_data import DATABASE, mysql_engine
from headrace_dev.demo.shop_verify import Check, Verdict, compare

__all__ = ["CDC_FILE", "CDC_TOPIC", "change_orders", "verify_cdc"]

CDC_FILE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "pipeline_cdc.yaml"
CDC_TOPIC = "shop.orders.cdc"
COLLECTION = "orders_cdc"
COLUMNS = ("id", "customer_id", "sku", "quantity", "price", "status", "version")
TIMES = ("created_at", "updated_at")


def change_orders(mysql_url: str, seed: int) -> tuple[int, int, int]:
    """Delete about 5% of the orders, mark about 10% returned (a new version) and insert as
    many new orders as were deleted, in transactions of mixed changes; (deleted, updated,
    inserted)."""
    import sqlalchemy as sa

    rng = random.Random(f"cdc-{seed}")
    with mysql_engine(mysql_url, DATABASE).begin() as conn:
        ids = [int(i) for (i,) in conn.execute(sa.text("SELECT id FROM orders ORDER BY id"))]
        top = max(ids, default=0)
    doomed = sorted(rng.sample(ids, len(ids) // 20))
    gone = set(doomed)
    returned = sorted(rng.sample([i for i in ids if i not in gone], len(ids) // 10))
    new = [top + 1 + n for n in range(len(doomed))]
    with mysql_engine(mysql_url, DATABASE).begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE id = :id"), [{"id": i} for i in doomed])
        conn.execute(
            sa.text(
                "UPDATE orders SET status = 'returned', version = version + 1, "
                "updated_at = UTC_TIMESTAMP(3) WHERE id = :id"
            ),
            [{"id": i} for i in returned],
        )
        conn.execute(
            sa.text(
                "INSERT INTO orders SELECT :id, customer_id, sku, quantity, price, 'placed', 1, "
                "UTC_TIMESTAMP(3), UTC_TIMESTAMP(3) FROM orders WHERE id = :like"
            ),
            [{"id": i, "like": rng.choice(returned or [top])} for i in new],
        )
    return len(doomed), len(returned), len(new)


def _expected(mysql_url: str) -> dict[int, dict[str, Any]]:
    """``SELECT *`` of ``shop.orders`` as the CDC records write it (see the module doc)."""
    import sqlalchemy as sa

    cols = ", ".join(COLUMNS + TIMES)
    with mysql_engine(mysql_url, DATABASE).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {cols} FROM orders"))  # noqa: S608 - constants
        out: dict[int, dict[str, Any]] = {}
        for row in rows:
            doc = dict(zip(COLUMNS + TIMES, row, strict=True))
            doc["price"] = format(Decimal(doc["price"]), "f")
            for t in TIMES:
                doc[t] = doc[t].isoformat()
            out[int(doc["id"])] = doc
    return out


def _collection(mongo_uri: str) -> dict[int, dict[str, Any]]:
    from pymongo import MongoClient

    client: Any = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    try:
        return {
            int(d["id"]): {k: d.get(k) for k in COLUMNS + TIMES}
            for d in client["shop"][COLLECTION].find()
        }
    finally:
        client.close()


def verify_cdc(env: Mapping[str, str]) -> Verdict:
    """MongoDB ``shop.orders_cdc`` against ``SELECT *`` of ``shop.orders``, row by row."""
    expected = _expected(env["HEADRACE_MYSQL_URL"])
    got = _collection(env["HEADRACE_MONGO_URI"])
    check: Check = compare("MongoDB shop.orders_cdc (the table's current rows)", expected, got)
    return Verdict([check])
