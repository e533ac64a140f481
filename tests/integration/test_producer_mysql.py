"""MySQL source on the real stack (MariaDB + Kafka): types, catalog checks, modes, Avro, scale.

``HEADRACE_TEST_SCALE`` scales the large table (default 1: 100,000 rows; the benchmark reads
1,000,000).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from fixtures.avro import ORDER_ROW
from fixtures.values import present
from sqlalchemy import create_engine, text

from headrace_dev.bench.produce_data import create_orders_table
from producers.testing import read_topic, write_pipeline
from schemas import AvroCodec, split_wire

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)
ROWS = max(20_000, int(100_000 * SCALE))


def _mysql(url: str, topic: str, **kw):
    return {"type": "mysql", "url": url, "topic": topic, **kw}


def test_types_map_cleanly(db_url, unique, tmp_path, produce, kafka_bootstrap, new_topic):
    topic = new_topic(".types", 1)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE t (id INT PRIMARY KEY, price DECIMAL(20,10), at DATETIME(3), "
                "ts TIMESTAMP NULL, doc JSON, bin BLOB, name VARCHAR(20), nothing INT NULL)"
            )
        )
        conn.execute(text("SET time_zone = '+00:00'"))
        conn.execute(
            text(
                "INSERT INTO t VALUES (1, 0.1000000003, '2024-03-01 10:00:00.250', "
                "'2024-03-01 11:00:00', '{\"a\": [1, 2.50]}', X'00FF', 'Zoë', NULL)"
            )
        )
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "t": _mysql(
                db_url,
                topic,
                table="t",
                mode="incrementing",
                incrementing_column="id",
                key=["id"],
                timestamp_field="at",
            )
        },
        metrics={"port": 19310},
    )
    done = produce(pipeline, "t", "--once")
    assert done.returncode == 0, done.stderr
    [(key, value, _, ts)] = read_topic(kafka_bootstrap, topic).messages
    assert key == b"1"
    assert ts == int(datetime(2024, 3, 1, 10, 0, 0, 250000, tzinfo=UTC).timestamp() * 1000)
    doc = orjson.loads(present(value))
    assert doc == {
        "id": 1,
        "price": "0.1000000003",
        "at": "2024-03-01T10:00:00.250000+00:00",
        "ts": "2024-03-01T11:00:00+00:00",
        "doc": {"a": [1, 2.5]},
        "bin": "00ff",
        "name": "Zoë",
        "nothing": None,
    }
    assert Decimal(doc["price"]) == Decimal("0.1000000003")


def test_unknown_column_lists_the_real_columns(
    orders_db, unique, tmp_path, produce, kafka_bootstrap, new_topic
):
    db_url, _ = orders_db  # the shared orders table (conftest)
    topic = new_topic(".x", 1)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "o": _mysql(
                db_url,
                topic,
                table="orders",
                mode="timestamp+incrementing",
                incrementing_column="id",
                timestamp_column="changed_at",
            )
        },
        metrics={"port": 19311},
    )
    done = produce(pipeline, "o", "--once")
    assert done.returncode == 2
    columns = "id, customer_id, qty, price, status, updated_at"
    assert f"column 'changed_at' not found in table 'orders' (columns: {columns})" in done.stderr
    missing = write_pipeline(
        tmp_path / "q.yaml",
        unique,
        kafka_bootstrap,
        {"o": _mysql(db_url, topic, table="ordres", mode="bulk")},
        metrics={"port": 19311},
    )
    done = produce(missing, "o", "--once")
    assert done.returncode == 2
    assert f"table 'ordres' not found in database '{unique}' (tables: orders)" in done.stderr


def test_large_table_every_row_once_then_only_new_rows(
    db_url, unique, tmp_path, produce, kafka_bootstrap, new_topic
):
    topic = new_topic(".orders", 3)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        create_orders_table(conn, "orders", ROWS)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "orders": _mysql(
                db_url,
                topic,
                table="orders",
                mode="timestamp+incrementing",
                incrementing_column="id",
                timestamp_column="updated_at",
                key=["id"],
                batch_size=5000,
            )
        },
        metrics={"port": 19312},
    )
    done = produce(pipeline, "orders", "--once")
    assert done.returncode == 0, done.stderr
    counts = read_topic(kafka_bootstrap, topic).key_counts()
    assert counts == {str(i).encode(): 1 for i in range(1, ROWS + 1)}
    with engine.begin() as conn:
        # an update moves a row's timestamp forward: it is read again; new rows too
        conn.execute(
            text(
                "UPDATE orders SET status = 'refunded', "
                "updated_at = '2025-06-01 00:00:00' WHERE id = 5"
            )
        )
        conn.execute(
            text(
                "INSERT INTO orders (id, customer, price, status, updated_at) "
                "VALUES (:i, 'c', 1.00, 'new', '2025-06-01 00:00:00')"
            ),
            {"i": ROWS + 1},
        )
    again = produce(pipeline, "orders", "--once")
    assert again.returncode == 0, again.stderr
    msgs = read_topic(kafka_bootstrap, topic).messages
    assert len(msgs) == ROWS + 2
    tail = sorted(
        orjson.loads(present(v))["id"]
        for k, v, _, _ in msgs
        if k in (b"5", str(ROWS + 1).encode())
        and orjson.loads(present(v))["updated_at"].startswith("2025")
    )
    assert tail == [5, ROWS + 1]


def test_timestamp_mode_with_delay_waits_for_late_commits(
    db_url, unique, tmp_path, produce, kafka_bootstrap, new_topic
):
    topic = new_topic(".ts", 1)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE ev (name VARCHAR(10), at DATETIME(6))"))
        conn.execute(text("SET time_zone = '+00:00'"))
        conn.execute(
            text(
                "INSERT INTO ev VALUES ('old1', '2020-01-01'), ('old2', '2020-01-01'),"
                " ('recent', UTC_TIMESTAMP(6) - INTERVAL 10 SECOND)"
            )
        )
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "ev": _mysql(
                db_url,
                topic,
                table="ev",
                mode="timestamp",
                timestamp_column="at",
                timestamp_delay="1h",
                key=["name"],
            )
        },
        metrics={"port": 19313},
    )
    done = produce(pipeline, "ev", "--once")
    assert done.returncode == 0, done.stderr
    # 'recent' is inside the delay window: not read yet, so a late commit before it is safe
    assert read_topic(kafka_bootstrap, topic).key_counts() == {b"old1": 1, b"old2": 1}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO ev VALUES ('late', '2021-06-01')"))
    again = produce(pipeline, "ev", "--once")
    assert again.returncode == 0, again.stderr
    assert read_topic(kafka_bootstrap, topic).key_counts() == {b"old1": 1, b"old2": 1, b"late": 1}


def test_avro_output_with_local_registry_and_schema_mismatch_to_dlq(
    db_url, unique, tmp_path, produce, kafka_bootstrap, new_topic
):
    topic = new_topic(".avro", 1)
    schema = ORDER_ROW  # the table o below, as Avro
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.avsc").write_text(json.dumps(schema))
    with create_engine(db_url).begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE o (id INT PRIMARY KEY, price DECIMAL(12,2), "
                "at DATETIME(3), name VARCHAR(10) NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO o VALUES (1, 12.30, '2024-01-01 00:00:01', 'Zoë'), "
                "(2, 0.10, '2024-01-01 00:00:02', NULL)"
            )
        )
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "o": _mysql(
                db_url,
                topic,
                table="o",
                mode="incrementing",
                incrementing_column="id",
                key=["id"],
                format="avro",
                schema="order",
            )
        },
        schemas={"dir": "schemas"},
        metrics={"port": 19314},
    )
    done = produce(pipeline, "o", "--once")
    assert done.returncode == 0, done.stderr
    [(_, value, _, _)] = read_topic(kafka_bootstrap, topic).messages
    schema_id, _ = split_wire(present(value))
    registry = json.loads((tmp_path / "schemas" / "registry.json").read_text())
    assert [e["id"] for e in registry["schemas"]] == [schema_id]
    decoded = AvroCodec(schema, schema_id).decode(present(value))
    assert decoded == {
        "id": 1,
        "price": Decimal("12.30"),
        "at": datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
        "name": "Zoë",
    }
    [dead] = read_topic(kafka_bootstrap, topic + ".dlq").messages
    assert dead[0] == b"2"
    assert b"name" in dead[2]["headrace.error.message"]
    assert orjson.loads(dead[2]["headrace.position"]) == {"id": 2}


def test_query_mode_and_exactly_once(db_url, unique, tmp_path, produce, kafka_bootstrap, new_topic):
    topic = new_topic(".q", 1)
    with create_engine(db_url).begin() as conn:
        create_orders_table(conn, "orders", 2_000)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "paid": _mysql(
                db_url,
                topic,
                query="SELECT id, price, updated_at FROM orders WHERE status = 'paid'",
                mode="timestamp+incrementing",
                incrementing_column="id",
                timestamp_column="updated_at",
                key=["id"],
                batch_size=300,
                exactly_once=True,
            )
        },
        metrics={"port": 19315},
    )
    done = produce(pipeline, "paid", "--once")
    assert done.returncode == 0, done.stderr
    msgs = read_topic(kafka_bootstrap, topic).messages  # read_committed: only committed txns
    expected = {str(i).encode() for i in range(1, 2_001) if i % 3 == 1}
    assert {k for k, _, _, _ in msgs} == expected
    assert len(msgs) == len(expected)
    assert set(orjson.loads(present(msgs[0][1]))) == {"id", "price", "updated_at"}
    again = produce(pipeline, "paid", "--once")
    assert again.returncode == 0, again.stderr
    assert len(read_topic(kafka_bootstrap, topic).messages) == len(expected)
