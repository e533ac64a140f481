"""mysql_cdc end to end on the stack: a MariaDB table -> ``headrace produce`` (``type: mysql_cdc``,
``mode: flat``) -> Kafka -> ``headrace sink`` (MongoDB, ``write: delete-on-tombstone``), as
processes, while a writer inserts, updates and deletes rows; the producer is killed with -9
once it streams and started again. At the end the collection equals ``SELECT *`` of the table
exactly, value for value as the sink stores them (DECIMAL as exact text, DATETIME as ISO text,
TIMESTAMP as UTC text, BLOB as base64, JSON as a document, ENUM/SET as text, NULL as null);
every record in Kafka carries its binlog position (and, streamed, its GTID) in headers.
BIGINT UNSIGNED stays below 2**63 here: MongoDB stores no larger integer (the sink
dead-letters such a record, naming the field)."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from pymongo import MongoClient

from headrace.checkpoints import CheckpointStore
from producers.mysql_cdc_catalog import connection_settings
from producers.mysql_cdc_source import POSITION_HEADER, TXID_HEADER
from producers.testing import read_topic, write_pipeline

pytestmark = pytest.mark.integration

ROWS = 2000
KILLS = 5
COLUMNS = "id, amount, qty, note, created, kind, label, ts, bin, tags, big"


def _start(repo_root: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "headrace_cli.main", *args],
        cwd=repo_root,
        env={**os.environ, **env, "HEADRACE_PROMETHEUS_TARGETS": ""},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _wait(pred: Callable[[], bool], what: str, procs: dict[str, Any], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{lg.read_text()[-3000:]}" for n, (_p, lg) in procs.items())
            pytest.fail(f"no {what} within {limit:.0f}s\n{logs}")
        time.sleep(0.3)


def _table(conn: Any) -> dict[str, dict[str, Any]]:
    """``SELECT *`` as the sink stores the records: by ``_id`` (the key's text)."""
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT {COLUMNS} FROM orders")
        return {
            str(r[0]): {
                "id": r[0],
                "amount": str(r[1]),
                "qty": r[2],
                "note": None if r[3] is None else orjson.loads(r[3]),
                "created": r[4].isoformat(),
                "kind": r[5],
                "label": r[6],
                "ts": None if r[7] is None else r[7].isoformat() + "Z",
                "bin": None if r[8] is None else base64.b64encode(r[8]).decode(),
                "tags": r[9],
                "big": r[10],
            }
            for r in cur.fetchall()
        }


def _collection(coll: Any) -> dict[str, dict[str, Any]]:
    return {d["_id"]: {k: v for k, v in d.items() if k != "_id"} for d in coll.find()}


def test_cdc_to_mongodb_through_kafka_with_kill_9_ends_equal_to_the_table(
    db_url: str,
    unique: str,
    tmp_path: Path,
    repo_root: Path,
    stack_env: dict[str, str],
    kafka_bootstrap: str,
    mongo_uri: str,
    new_topic: Callable[..., str],
) -> None:
    settings = connection_settings(db_url)
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(12,2), qty INT UNSIGNED, "
            "note JSON, created DATETIME(6), kind ENUM('a','b'), label VARCHAR(20), "
            "ts TIMESTAMP(3) NULL, bin VARBINARY(8), tags SET('x','y','z'), big BIGINT UNSIGNED)"
        )
        for s in range(0, ROWS, 500):
            cur.execute(
                "INSERT INTO orders VALUES "
                + ",".join(
                    f"({i},{i}.05,{4_000_000_000 + i},'{{\"n\":{i}}}',"
                    f"'2024-01-01 00:00:00.{i:06d}','a',{'NULL' if i % 3 else repr(f'l{i}')},"
                    f"'2024-06-01 12:00:00.{i % 1000:03d}',x'00ff{i:04x}','x,z',{2**63 - 1 - i})"
                    for i in range(s, s + 500)
                )
            )
    topic = new_topic(".cdc", 3)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "cdc": {
                "type": "mysql_cdc",
                "url": db_url,
                "tables": ["orders"],
                "mode": "flat",
                "topic": topic,
                "chunk_size": 500,
                "poll_interval": "0.2s",
            }
        },
        sinks={
            "docs": {
                "type": "mongodb",
                "from": topic,
                "uri": mongo_uri,
                "database": unique,
                "collection": "orders",
                "write": "delete-on-tombstone",
            }
        },
        metrics={"port": 19334},  # busy: a free one
    )
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, unique, "cdc")
    mongo: Any = MongoClient(mongo_uri)
    coll = mongo[unique]["orders"]
    stop = threading.Event()
    written = {"ops": 0}

    def writer() -> None:
        w = pymysql.connect(**settings, autocommit=True)
        rnd = random.Random(17)
        nxt = ROWS
        with w.cursor() as cur:
            while not stop.is_set():
                i = rnd.randrange(nxt)
                op = rnd.random()
                if op < 0.4:
                    cur.execute(
                        "UPDATE orders SET amount = amount + 0.01, kind = 'b', "
                        "note = JSON_OBJECT('u', %s), label = NULL, ts = UTC_TIMESTAMP(3), "
                        "bin = NULL, tags = 'y', big = big DIV 2 WHERE id = %s",
                        (written["ops"], i),
                    )
                elif op < 0.55:
                    cur.execute("DELETE FROM orders WHERE id = %s", (i,))
                elif op < 0.65:  # several rows in one transaction
                    cur.execute("BEGIN")
                    cur.execute(
                        "UPDATE orders SET qty = qty + 1 WHERE id BETWEEN %s AND %s", (i, i + 5)
                    )
                    cur.execute("DELETE FROM orders WHERE id = %s", (i + 6,))
                    cur.execute("COMMIT")
                else:
                    cur.execute(
                        "INSERT INTO orders VALUES (%s, 1.50, 7, NULL, NOW(6), 'a', 'new', "
                        "NULL, x'', '', 0)",
                        (nxt,),
                    )
                    nxt += 1
                written["ops"] += 1
                time.sleep(0.002)
        w.close()

    plog, slog = tmp_path / "produce.log", tmp_path / "sink.log"
    produce_args = ("produce", "cdc", "-f", str(pipeline))
    producer = _start(repo_root, stack_env, plog, *produce_args)
    sink = _start(
        repo_root, stack_env, slog, "sink", "docs", "-f", str(pipeline), "--metrics-port", "0"
    )
    procs: dict[str, Any] = {"producer": (producer, plog), "sink": (sink, slog)}
    thread = threading.Thread(target=writer)
    thread.start()
    try:

        def streaming() -> bool:
            state = store.load()
            return state is not None and state.get("phase") == "stream" and written["ops"] > 300

        _wait(streaming, "a streaming checkpoint", procs, 120)
        time.sleep(1.0)  # mid-stream, past that checkpoint
        producer.send_signal(signal.SIGKILL)
        producer.wait(30)
        time.sleep(1.0)  # the writer goes on while the producer is down
        producer = _start(repo_root, stack_env, plog, *produce_args)
        procs["producer"] = (producer, plog)
        start_ops = written["ops"]
        _wait(lambda: written["ops"] > start_ops + 300, "writes after the restart", procs, 120)
        stop.set()
        thread.join()
        expected = _table(conn)

        def equal() -> bool:
            return _collection(coll) == expected

        try:
            _wait(equal, "the collection equal to the table", procs, 120)
        except pytest.fail.Exception:
            got = _collection(coll)
            missing = sorted(set(expected) - set(got))[:10]
            extra = sorted(set(got) - set(expected))[:10]
            differ = [k for k in expected if k in got and got[k] != expected[k]][:5]
            detail = [(k, expected[k], got[k]) for k in differ]
            pytest.fail(
                f"{len(expected)} rows, {len(got)} documents; missing {missing}, extra {extra}, "
                f"differ {detail}\n--- produce\n{plog.read_text()[-4000:]}"
            )
        assert len(expected) > ROWS // 2
        # every change record names its binlog position; the streamed ones (tombstones among
        # them) their transaction's GTID too (MariaDB gives every transaction one)
        messages = read_topic(kafka_bootstrap, topic).messages
        assert all(POSITION_HEADER in h for _k, _v, h, _t in messages)
        tombstones = [h for _k, v, h, _t in messages if v is None]  # deletes: streamed
        assert tombstones and all(TXID_HEADER in h for h in tombstones)
        assert sum(TXID_HEADER in h for _k, _v, h, _t in messages) > written["ops"] // 2
    finally:
        stop.set()
        thread.join()
        for proc in (producer, sink):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        mongo.drop_database(unique)
        mongo.close()
        conn.close()


def test_exactly_once_cdc_has_no_duplicate_after_kill_9(
    db_url: str,
    unique: str,
    tmp_path: Path,
    repo_root: Path,
    stack_env: dict[str, str],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
) -> None:
    """``exactly_once: true``: each batch and its checkpoint are one Kafka transaction. The
    producer is killed with -9 ``KILLS`` times (after its first checkpoint, then streaming, at
    random moments) while a writer changes the table; a read_committed reader then sees
    every change exactly once (no binlog position twice for a key), and the records applied
    in order give ``SELECT *``. (Without exactly_once the same run showed no duplicate
    either: the at-least-once runner waits for its records and stores its checkpoint at the
    end of every pass, and a streaming pass here reads a few changes to the binlog's end, so
    a kill rarely falls between the two; this test guards the transactional path.)"""
    settings = connection_settings(db_url)
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id INT PRIMARY KEY, n INT, note VARCHAR(20))")
        for s in range(0, 20_000, 2000):
            cur.execute(
                "INSERT INTO orders VALUES "
                + ",".join(f"({i}, {i}, 'r{i}')" for i in range(s, s + 2000))
            )
    topic = new_topic(".cdc", 3)
    pipeline = write_pipeline(
        tmp_path / "p.yaml",
        unique,
        kafka_bootstrap,
        {
            "cdc": {
                "type": "mysql_cdc",
                "url": db_url,
                "tables": ["orders"],
                "mode": "flat",
                "topic": topic,
                "chunk_size": 200,
                "batch_size": 50,
                "poll_interval": "0.1s",
                "exactly_once": True,
            }
        },
        metrics={"port": 19335},
    )
    store = CheckpointStore({"bootstrap.servers": kafka_bootstrap}, unique, "cdc")
    stop = threading.Event()
    written = {"ops": 0}

    def writer() -> None:
        w = pymysql.connect(**settings, autocommit=True)
        rnd = random.Random(5)
        nxt = 20_000
        with w.cursor() as cur:
            while not stop.is_set():
                i = rnd.randrange(nxt)
                if rnd.random() < 0.5:
                    cur.execute("UPDATE orders SET n = n + 1 WHERE id = %s", (i,))
                elif rnd.random() < 0.3:
                    cur.execute("DELETE FROM orders WHERE id = %s", (i,))
                else:
                    cur.execute("INSERT INTO orders VALUES (%s, 0, 'new')", (nxt,))
                    nxt += 1
                written["ops"] += 1
                time.sleep(0.002)
        w.close()

    plog = tmp_path / "produce.log"
    args = ("produce", "cdc", "-f", str(pipeline))
    producer = _start(repo_root, stack_env, plog, *args)
    procs: dict[str, Any] = {"producer": (producer, plog)}
    thread = threading.Thread(target=writer)
    thread.start()
    try:

        def checkpointed(stream: bool) -> Callable[[], bool]:
            """A checkpoint is stored (``stream``: one of the streaming phase)."""

            def reached() -> bool:
                state = store.load()
                return state is not None and (not stream or state.get("phase") == "stream")

            return reached

        rnd = random.Random(3)
        for kill in range(KILLS):
            what = "a streaming checkpoint" if kill else "a first checkpoint"
            _wait(checkpointed(stream=kill > 0), what, procs, 120)
            time.sleep(rnd.uniform(0.1, 1.5))  # mid-batch: records sent past the checkpoint
            producer.send_signal(signal.SIGKILL)
            producer.wait(30)
            producer = _start(repo_root, stack_env, plog, *args)
            procs["producer"] = (producer, plog)
        start_ops = written["ops"]
        _wait(lambda: written["ops"] > start_ops + 300, "writes after the restarts", procs, 120)
        stop.set()
        thread.join()
        with conn.cursor() as cur:
            cur.execute("SELECT id, n, note FROM orders")
            expected = {str(i).encode(): {"id": i, "n": n, "note": note} for i, n, note in cur}

        def applied() -> tuple[dict[bytes, Any], list[tuple[bytes, bytes]]]:
            state: dict[bytes, Any] = {}
            seen: list[tuple[bytes, bytes]] = []
            for key, value, headers, _t in read_topic(kafka_bootstrap, topic).messages:
                assert key is not None
                seen.append((key, dict(headers)[POSITION_HEADER]))
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = orjson.loads(value)
            return state, seen

        _wait(lambda: applied()[0] == expected, "the topic applied equal to the table", procs, 120)
        _state, seen = applied()
        doubled = len(seen) - len(set(seen))
        assert doubled == 0, f"{doubled} of {len(seen)} records were read twice"
    finally:
        stop.set()
        thread.join()
        if producer.poll() is None:
            producer.send_signal(signal.SIGTERM)
            try:
                producer.wait(30)
            except subprocess.TimeoutExpired:
                producer.kill()
                producer.wait(10)
        conn.close()
