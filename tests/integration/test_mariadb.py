"""MariaDB through SQLAlchemy 2 + PyMySQL: types the MySQL source reads must round-trip exactly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME


@pytest.fixture
def database(db_url: str) -> Iterator[Engine]:
    """An engine on the fresh database of ``db_url`` (conftest), dropped at teardown."""
    engine = create_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _orders(metadata: MetaData) -> Table:
    return Table(
        "orders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("amount", Numeric(12, 2), nullable=False),
        Column("created_at", DATETIME(fsp=6), nullable=False),
        Column("doc", JSON, nullable=True),
        Column("blob", LargeBinary, nullable=True),
        Column("note", String(50), nullable=True),
    )


ROWS = [
    {
        "amount": Decimal("0.10"),
        "created_at": datetime(2024, 2, 29, 23, 59, 59, 123456),
        "doc": {"sku": "A-1", "tags": ["x", "ü"], "qty": 3, "price": "19.99"},
        "blob": bytes(range(256)),
        "note": "Zoë",
    },
    {
        "amount": Decimal("0.20"),
        "created_at": datetime(2024, 3, 1, 0, 0, 0, 1),
        "doc": None,
        "blob": None,
        "note": None,
    },
    {
        "amount": Decimal("9999999999.99"),
        "created_at": datetime(1999, 12, 31, 12, 0, 0, 0),
        "doc": {"nested": {"empty": [], "null": None, "big": 12345678901234567890}},
        "blob": b"\x00\xff\x00",
        "note": "",
    },
]


def test_types_round_trip_and_decimal_is_exact(database: Engine):
    orders = _orders(MetaData())
    orders.create(database)
    with database.begin() as conn:
        conn.execute(insert(orders), ROWS)  # bound parameters, executemany
        # A value with a quote and a backslash goes through a bound parameter, not the SQL text.
        conn.execute(
            insert(orders),
            {"amount": Decimal("-0.01"), "created_at": datetime(2000, 1, 1), "note": "it's \\"},
        )

    with database.connect() as conn:
        rows = conn.execute(select(orders).order_by(orders.c.id)).mappings().all()
        assert len(rows) == 4
        for got, want in zip(rows[:3], ROWS, strict=True):
            assert {k: got[k] for k in want} == want
        assert type(rows[0]["amount"]) is Decimal
        assert rows[0]["amount"] + rows[1]["amount"] == Decimal("0.30")
        assert rows[0]["created_at"].microsecond == 123456
        assert rows[3]["note"] == "it's \\"
        assert rows[3]["doc"] is None and rows[3]["blob"] is None

        # SQL computes the sum exactly: 0.10 + 0.20 = 0.30, and SQL itself says they tie.
        pair = orders.c.id.in_([rows[0]["id"], rows[1]["id"]])
        total = conn.execute(select(func.sum(orders.c.amount)).where(pair)).scalar_one()
        assert total == Decimal("0.30")
        assert type(total) is Decimal
        ties = conn.execute(
            text("SELECT SUM(amount) = 0.30 FROM orders WHERE id IN (:a, :b)"),
            {"a": rows[0]["id"], "b": rows[1]["id"]},
        ).scalar_one()
        assert ties == 1

        # JSON is stored as JSON: the server can reach inside it.
        sku = conn.execute(
            text("SELECT JSON_VALUE(doc, '$.sku') FROM orders WHERE id = :i"), {"i": rows[0]["id"]}
        ).scalar_one()
        assert sku == "A-1"
        nulls = conn.execute(
            select(func.count()).select_from(orders).where(orders.c.note.is_(None))
        ).scalar_one()
        assert nulls == 1
