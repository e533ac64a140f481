"""`headrace run --until-idle`: MySQL -> Kafka -> a Faust transform stage -> MongoDB, supervised.

The whole chain with real processes (source, worker, sink), checked against Python's own
computation on the same rows: the filtered count, and exact DECIMAL totals end to end.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from pymongo import MongoClient


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
