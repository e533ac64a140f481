"""`headrace run --until-idle`: MySQL -> Kafka -> a Faust transform stage -> MongoDB, supervised.

The whole chain with real processes (source, worker, sink), checked against Python's own
computation on the same rows: the filtered count, and exact DECIMAL totals end to end.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymongo import MongoClient

ROWS = 300


@pytest.fixture
def orders_db(mysql_url: str, unique: str):
    base = mysql_url.rsplit("/", 1)[0]
    with sa.create_engine(base).begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {unique}"))
    rows = [
        {
            "i": i,
            "c": f"c{i % 7}",
            "q": i % 5,
            "p": f"{i % 13}.{i % 100:02d}",
            "s": "cancelled" if i % 9 == 0 else "ok",
        }
        for i in range(1, ROWS + 1)
    ]
    with sa.create_engine(f"{base}/{unique}").begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id VARCHAR(10), qty INT, "
                "price DECIMAL(10,2), status VARCHAR(10), updated_at DATETIME(3))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:i, :c, :q, :p, :s, UTC_TIMESTAMP(3))"), rows
        )
    yield f"{base}/{unique}", rows
    with sa.create_engine(base).begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE {unique}"))


def test_run_until_idle_moves_every_record_once(
    tmp_path: Path,
    orders_db,
    kafka_bootstrap: str,
    mongo_uri: str,
    unique: str,
    repo_root: Path,
    new_topic,
) -> None:
    url, rows = orders_db
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"""
name: {unique}
kafka: {{bootstrap_servers: '{kafka_bootstrap}'}}
sources:
  orders_db:
    type: mysql
    url: '{url}'
    table: orders
    mode: incrementing
    incrementing_column: id
    topic: {unique}.orders.raw
    key: [id]
stages:
  clean:
    from: {unique}.orders.raw
    to: {unique}.orders.clean
    transform:
      - filter: "status != 'cancelled' and qty > 0"
      - set: {{total: "price * qty"}}
sinks:
  docs:
    type: mongodb
    from: {unique}.orders.clean
    uri: '{mongo_uri}'
    database: {unique}
    collection: orders
    id: [id]
""")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace.cli.main",
            "run",
            "-f",
            str(pipeline),
            "--until-idle",
            "--idle-timeout",
            "300",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    log = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, log
    assert "[run] idle: every source finished" in result.stdout, log
    assert "restart #" not in result.stdout, log  # nothing crashed on the way

    expected = {
        r["i"]: Decimal(r["p"]) * r["q"] for r in rows if r["s"] != "cancelled" and r["q"] > 0
    }
    client: MongoClient = MongoClient(mongo_uri)
    try:
        docs = list(client[unique]["orders"].find())
        assert len(docs) == len(expected)
        assert {d["_id"]: Decimal(d["total"]) for d in docs} == expected
    finally:
        client.drop_database(unique)
        client.close()
