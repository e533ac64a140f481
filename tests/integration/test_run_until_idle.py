"""`headrace run --until-idle`: MySQL -> Kafka -> a Faust transform stage -> MongoDB, supervised.

The whole chain with real processes (source, worker, sink), checked against Python's own
computation on the same rows: the filtered count, and exact DECIMAL totals end to end.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from pymongo import MongoClient


def test_run_until_idle_moves_every_record_once(
    orders_pipeline,
    mongo_uri: str,
    unique: str,
    repo_root: Path,
    new_topic,  # teardown deletes the <unique> topics and groups
) -> None:
    pipeline, rows = orders_pipeline
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace_cli.main",
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
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    try:
        docs = list(client[unique]["orders"].find())
        assert len(docs) == len(expected)
        assert {d["_id"]: Decimal(d["total"]) for d in docs} == expected
    finally:
        client.drop_database(unique)
        client.close()
