"""mysql_cdc on the stack's MariaDB: a snapshot taken while a writer inserts, updates and
deletes, then the binlog, applied in order, ends with exactly ``SELECT *`` of the table; a
restart from a mid-stream checkpoint too; envelope records without a snapshot, tables by
pattern. (The source alone, no Kafka: test_mysql_cdc_e2e.py runs it through Kafka and MongoDB.)"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from fixtures.values import present
from prometheus_client import REGISTRY

from producers.mysql_cdc_catalog import connection_settings
from producers.mysql_cdc_source import CDCSource, PositionLost, SchemaChanged

pytestmark = pytest.mark.integration

ROWS = 3000
REPO = Path(__file__).resolve().parents[2]


def _apply(state: dict[bytes, Any], batches: list[Any]) -> dict[str, Any] | None:
    """Apply flat records (tombstones delete) to ``state``; the last batch's checkpoint."""
    last = None
    for b in batches:
        enc = b.rows().encoded
        assert not b.poison, b.poison
        if enc is not None:
            for k, d in zip(enc.keys, enc.datas, strict=True):
                if d is None:
                    state.pop(k, None)
                else:
                    state[k] = orjson.loads(d)
        last = b.state
    return last


def _records(batches: list[Any]) -> list[tuple[bytes, bytes]]:
    """(key, value) of every record of ``batches``; no poison allowed."""
    out = []
    for b in batches:
        assert not b.poison, b.poison
        enc = b.rows().encoded
        if enc is not None:
            out += list(zip(enc.keys or [], enc.datas or [], strict=True))
    return out


def _table(conn: Any, name: str) -> dict[bytes, Any]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, amount, qty, note, created, kind FROM `{name}`")
        return {
            str(r[0]).encode(): {
                "id": r[0],
                "amount": str(r[1]),
                "qty": r[2],
                "note": None if r[3] is None else orjson.loads(r[3]),
                "created": r[4].isoformat(),
                "kind": r[5],
            }
            for r in cur.fetchall()
        }


def test_snapshot_under_writes_then_stream_and_restart_is_exact(mysql_url: str) -> None:
    settings = connection_settings(mysql_url)
    name = f"cdc_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{name}` (id INT PRIMARY KEY, amount DECIMAL(12,2), "
            "qty INT UNSIGNED, note JSON, created DATETIME(6), kind ENUM('a','b'))"
        )
        for s in range(0, ROWS, 500):
            cur.execute(
                f"INSERT INTO `{name}` VALUES "
                + ",".join(
                    f"({i},{i}.25,{i},'{{\"n\":{i}}}','2024-01-01 00:00:00.5','a')"
                    for i in range(s, s + 500)
                )
            )
    stop = threading.Event()

    def writer() -> None:
        w = pymysql.connect(**settings, autocommit=True)
        rnd = random.Random(7)
        nxt = ROWS
        with w.cursor() as cur:
            while not stop.is_set():
                i = rnd.randrange(nxt)
                op = rnd.random()
                if op < 0.4:
                    cur.execute(
                        f"UPDATE `{name}` SET amount = amount + 1, kind='b' WHERE id=%s", (i,)
                    )
                elif op < 0.6:
                    cur.execute(f"DELETE FROM `{name}` WHERE id=%s", (i,))
                else:
                    cur.execute(
                        f"INSERT INTO `{name}` VALUES (%s, 1.5, 7, NULL, NOW(6), 'a')",
                        (nxt,),
                    )
                    nxt += 1
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        src = CDCSource("cdc_it", settings, tables=[name], flat=True, chunk_size=500)
        src.restore(None)
        state: dict[bytes, Any] = {}
        gen = src.batches()
        first = [next(gen), next(gen)]  # two chunks, then a "crash" mid-snapshot
        gen.close()
        checkpoint = _apply(state, first)
        labels = (f"cdc-it-{name}", "cdc_it", "source")
        src = CDCSource(
            "cdc_it", settings, tables=[name], flat=True, chunk_size=500, metrics_labels=labels
        )
        src.restore(checkpoint)
        snapshot = list(src.batches())
        checkpoint = _apply(state, snapshot)  # the rest of the snapshot
        assert checkpoint is not None and checkpoint["phase"] == "stream"
        # the resumed snapshot's gauges: the rows it read (all but the first two chunks), and
        # the server's estimate of the table
        gauge = dict(zip(("pipeline", "stage", "kind"), labels, strict=True))
        table = {**gauge, "table": f"{settings['database']}.{name}"}
        encoded = [b.rows().encoded for b in snapshot]
        read = sum(len(e.keys or []) for e in encoded if e is not None)
        assert REGISTRY.get_sample_value("headrace_cdc_snapshot_rows", table) == read > 0
        assert (REGISTRY.get_sample_value("headrace_cdc_snapshot_rows_estimate", table) or 0) > 0
        checkpoint = _apply(state, list(src.batches()))  # the binlog so far
        assert REGISTRY.get_sample_value("headrace_cdc_lag_seconds", gauge) == 0  # caught up
        assert REGISTRY.get_sample_value("headrace_cdc_lag_bytes", gauge) == 0
    finally:
        stop.set()
        thread.join()
    src = CDCSource("cdc_it", settings, tables=[name], flat=True)  # a restart
    src.restore(checkpoint)
    _apply(state, list(src.batches()))
    try:
        assert state == _table(conn, name)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE `{name}`")
        conn.close()


def test_envelope_records_by_pattern_without_a_snapshot(mysql_url: str) -> None:
    """``mode: envelope`` (the default), ``snapshot: never`` and two tables given by one
    pattern: rows there before the start are not read; every later change is one record
    (op c/u/d) whose ``before`` is the row as the previous record left it and whose
    ``after`` applied in order gives ``SELECT *`` of the rows written since."""
    settings = connection_settings(mysql_url)
    prefix = f"cdcenv_{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}_a", f"{prefix}_b"]
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f"CREATE TABLE `{name}` (id INT PRIMARY KEY, n INT, note VARCHAR(20))")
            cur.execute(f"INSERT INTO `{name}` VALUES (1, 1, 'before the start')")
    try:
        src = CDCSource("cdc_env", settings, tables=[f"{prefix}_*"], snapshot="never")
        src.restore(None)
        assert sorted(t.split(".")[-1] for t in src.tables) == names
        first = [b.rows().encoded for b in src.batches()]  # at the head: no rows yet
        assert sum(len(e.keys or []) for e in first if e is not None) == 0
        rng = random.Random(7)
        with conn.cursor() as cur:
            for i in range(2, 60):
                name = rng.choice(names)
                cur.execute(f"INSERT INTO `{name}` VALUES ({i}, {i}, 'new')")
                if i % 3 == 0:
                    cur.execute(f"UPDATE `{name}` SET n = n + 100 WHERE id = {i}")
                if i % 7 == 0:
                    cur.execute(f"DELETE FROM `{name}` WHERE id = {i}")
        state: dict[tuple[str, bytes], Any] = {}
        ops: dict[str, int] = {}
        for batch in src.batches():
            enc = batch.rows().encoded
            assert not batch.poison and enc is not None and enc.keys is not None
            for raw_key, data in zip(enc.keys, enc.datas or [], strict=True):
                key, value = present(raw_key), orjson.loads(present(data))
                table = value["source"]["table"].split(".")[-1]  # db.table
                ops[value["op"]] = ops.get(value["op"], 0) + 1
                assert value["op"] in ("c", "u", "d"), value  # no snapshot reads
                if value["op"] != "c":
                    assert value["before"] == state[(table, key)], value
                if value["op"] == "d":
                    assert value["after"] is None
                    del state[(table, key)]
                else:
                    state[(table, key)] = value["after"]
        assert ops == {"c": 58, "u": 19, "d": 8}
        expected = {}
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f"SELECT id, n, note FROM `{name}` WHERE id > 1")
                for i, n, note in cur.fetchall():
                    expected[(name, str(i).encode())] = {"id": i, "n": n, "note": note}
        assert state == expected
    finally:
        with conn.cursor() as cur:
            for name in names:
                cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


def test_alter_table_mid_stream_is_followed_and_a_drop_stops(mysql_url: str) -> None:
    """A column added, renamed, retyped and dropped while the source streams: every row after
    each statement reads with the table's columns of that moment, the flat records applied in
    order end equal to ``SELECT *``, a restart from the checkpoint reads on with the new
    columns, and DROP TABLE stops the source naming the statement. Behind by two statements
    (the catalog already past the rows between them), those rows are typed from their binlog
    table map."""
    settings = connection_settings(mysql_url)
    name = f"cdcddl_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)

    def sql(*statements: str) -> None:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def select_all() -> dict[bytes, Any]:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SELECT * FROM `{name}`")
            return {str(r["id"]).encode(): dict(r) for r in cur.fetchall()}

    sql(f"CREATE TABLE `{name}` (id INT PRIMARY KEY, n INT)", f"INSERT INTO `{name}` VALUES (1, 1)")
    try:
        src = CDCSource("cdc_ddl", settings, tables=[name], flat=True)
        src.restore(None)
        state: dict[bytes, Any] = {}
        checkpoint = _apply(state, list(src.batches()))  # the snapshot
        steps = [
            (
                f"ALTER TABLE `{name}` ADD COLUMN note VARCHAR(20)",
                [
                    f"INSERT INTO `{name}` VALUES (2, 2, 'x')",
                    f"UPDATE `{name}` SET note = 'y' WHERE id = 1",
                ],
            ),
            (
                f"ALTER TABLE `{name}` RENAME COLUMN n TO qty",
                [f"INSERT INTO `{name}` VALUES (3, 3, 'z')"],
            ),
            (
                f"ALTER TABLE `{name}` MODIFY qty DECIMAL(10,2)",
                [f"UPDATE `{name}` SET qty = qty + 0.25"],
            ),
            (
                f"ALTER TABLE `{name}` DROP COLUMN note",
                [f"INSERT INTO `{name}` VALUES (4, 4)", f"DELETE FROM `{name}` WHERE id = 2"],
            ),
        ]
        for ddl, changes in steps:
            sql(ddl, *changes)
            checkpoint = _apply(state, list(src.batches()))
        sql(f"UPDATE `{name}` SET qty = qty + 1")  # every row once more, with the last columns
        checkpoint = _apply(state, list(src.batches()))
        expected = {k: {**v, "qty": str(v["qty"])} for k, v in select_all().items()}
        assert state == expected
        assert sorted(expected[b"1"]) == ["id", "qty"]

        again = CDCSource("cdc_ddl", settings, tables=[name], flat=True)
        again.restore(checkpoint)
        sql(f"INSERT INTO `{name}` VALUES (5, 5)")
        _apply(state, list(again.batches()))
        assert state[b"5"] == {"id": 5, "qty": "5.00"}

        sql(
            f"ALTER TABLE `{name}` ADD COLUMN a INT",
            f"INSERT INTO `{name}` VALUES (6, 6, 6)",
            f"ALTER TABLE `{name}` DROP COLUMN a",
        )
        _apply(state, list(again.batches()))  # behind by both: the row keeps its column a
        assert state[b"6"] == {"id": 6, "qty": "6.00", "a": 6}

        last = CDCSource("cdc_ddl", settings, tables=[name], flat=True)
        last.restore(None)
        list(last.batches())
        sql(f"DROP TABLE `{name}`")
        with pytest.raises(
            SchemaChanged, match=rf"DDL on captured table .*{name}.*DROP TABLE.*dropped"
        ):
            list(last.batches())
    finally:
        sql(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


def test_both_snapshot_drivers_give_identical_records_for_every_column_type(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot reads with mysqlclient when installed (``connect_bulk``), else PyMySQL:
    on a table with every column type, NULLs and edge values, both give the same records
    byte for byte, and the binlog gives the same rows again. (It found the binlog's BIT read
    as a decimal number, BINARY(n) losing its zero padding, negative fractional TIMEs decoded
    wrong by mysql-replication, tiny DECIMALs written with an exponent, and FLOAT rounded to
    6 digits by the snapshot's text protocol.)"""
    import MySQLdb  # noqa: F401 - mysqlclient is a dev dependency: its absence fails this test

    settings = connection_settings(mysql_url)
    name = f"cdctypes_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)
    columns = (
        "id INT PRIMARY KEY, d DECIMAL(12,2), u INT UNSIGNED, bu BIGINT UNSIGNED, t TINYINT, "
        "y YEAR, b BIT(8), f FLOAT, db DOUBLE, dt DATETIME(6), dt0 DATETIME, ts TIMESTAMP NULL, "
        "da DATE, ti TIME, vc VARCHAR(20), tx TEXT, bl BLOB, vb VARBINARY(8), "
        "e ENUM('new','paid'), s SET('a','b','c'), j JSON, f3 FLOAT, bi BINARY(4), "
        "ti3 TIME(3), ts6 TIMESTAMP(6) NULL, mi MEDIUMINT, dbig DECIMAL(65,30), bit64 BIT(64)"
    )
    rows = [
        "(1, 12.30, 4294967295, 18446744073709551615, -5, 2024, b'101', 1.5, 2.25, "
        "'2024-01-02 03:04:05.000006', '2024-01-02 03:04:05', '2024-01-02 03:04:05', "
        "'2024-02-29', '-01:02:00', 'héllo', 'text', X'00FF', X'01', 'paid', 'a,c', "
        "'{\"a\": [1, \"x\"]}', 1/3, 'ab', '12:34:56.789', '2024-01-02 03:04:05.000001', "
        "-8388608, 12345678901234567890123456789012345.123456789012345678901234567890, "
        "b'1111111111111111111111111111111111111111111111111111111111111111')",
        "(2, -0.01, 0, 0, 127, 1999, b'0', -0.5, 1e300, '2024-01-02 03:04:05.500000', "
        "'1970-01-01 00:00:01', NULL, '0001-01-01', '838:59:59', '', '', X'', X'', 'new', '', "
        "'null', 0.1, X'00', '-00:00:00.001', '1970-01-01 00:00:01', 8388607, -0.000000000001, "
        "b'1')",
        "(3" + ", NULL" * 27 + ")",
    ]
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}` ({columns})")
        cur.execute(f"INSERT INTO `{name}` VALUES {', '.join(rows)}")
    try:
        got = {}
        for driver in ("pymysql", "mysqldb"):
            monkeypatch.setenv("HEADRACE_CDC_DRIVER", driver)
            src = CDCSource("cdc_types", settings, tables=[name], flat=True)
            src.restore(None)
            got[driver] = _records(list(src.batches()))
        assert got["pymysql"] == got["mysqldb"] and len(got["pymysql"]) == 3
        # the binlog reads the same rows alike: the same values inserted again under new ids
        src = CDCSource("cdc_types", settings, tables=[name], flat=True, snapshot="never")
        src.restore(None)
        list(src.batches())
        names = ", ".join(c.split()[0] for c in columns.split(", ")[1:])
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{name}` SELECT id + 10, {names} FROM `{name}`")
        streamed = _records(list(src.batches()))

        def renumbered(records: list[tuple[bytes, bytes]]) -> list[Any]:
            return [orjson.loads(d) | {"id": orjson.loads(d)["id"] % 10} for _, d in records]

        assert renumbered(streamed) == renumbered(got["pymysql"])
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


def test_a_purged_binlog_stops_the_source_or_resnapshots_when_needed(mysql_url: str) -> None:
    """The checkpointed binlog file purged while the source was stopped: ``snapshot:
    initial`` stops at start naming the position and the fix; ``when_needed`` snapshots
    again by itself and reads the table as it is now."""
    settings = connection_settings(mysql_url)
    name = f"cdcpurge_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}` (id INT PRIMARY KEY, n INT)")
        cur.execute(f"INSERT INTO `{name}` VALUES (1, 1), (2, 2)")
    try:
        src = CDCSource("cdc_purge", settings, tables=[name], flat=True)
        src.restore(None)
        state: dict[bytes, Any] = {}
        checkpoint = _apply(state, list(src.batches()))  # the snapshot, ending in "stream"
        assert checkpoint is not None and checkpoint["phase"] == "stream"
        with conn.cursor() as cur:
            cur.execute(f"UPDATE `{name}` SET n = 20 WHERE id = 2")  # never read: purged
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("SHOW MASTER STATUS")
            head = cur.fetchone()[0]
            # MariaDB purges a binlog only once its binlog checkpoint passed (InnoDB has the
            # transactions durably), a moment after the FLUSH: ask until it is gone
            for _ in range(100):
                cur.execute(f"PURGE BINARY LOGS TO '{head}'")
                cur.execute("SHOW BINARY LOGS")
                if checkpoint["binlog"][0] not in [str(r[0]) for r in cur.fetchall()]:
                    break
                time.sleep(0.1)
        lost = CDCSource("cdc_purge", settings, tables=[name], flat=True)
        with pytest.raises(PositionLost, match=rf"{checkpoint['binlog'][0]}.*is gone.*--reset"):
            lost.restore(checkpoint)
        again = CDCSource("cdc_purge", settings, tables=[name], flat=True, snapshot="when_needed")
        again.restore(checkpoint)
        fresh: dict[bytes, Any] = {}
        after = _apply(fresh, list(again.batches()))
        assert after is not None and after["phase"] == "stream"
        assert fresh == {b"1": {"id": 1, "n": 1}, b"2": {"id": 2, "n": 20}}
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


def test_a_mariadb_restart_mid_stream_is_survived_without_loss(mysql_url: str) -> None:
    """The stack's MariaDB stopped and started again while the source streams: passes fail
    while it is down (a ``database_unavailable`` fault, reconnecting with backoff), then the
    source reads on from its last position: the changes written before the stop and after
    the start are each read once, and the records applied equal ``SELECT *``."""
    from headrace_dev.stack import Stack, StackPaths

    settings = connection_settings(mysql_url)
    name = f"cdcrestart_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}` (id INT PRIMARY KEY, n INT)")
        cur.execute(f"INSERT INTO `{name}` VALUES (1, 1), (2, 2)")
    conn.close()
    stack = Stack(StackPaths.from_env(REPO), log=lambda _: None)
    src = CDCSource("cdc_restart", settings, tables=[name], flat=True)
    src.restore(None)
    state: dict[bytes, Any] = {}
    _apply(state, list(src.batches()))
    try:
        writes = pymysql.connect(**settings, autocommit=True)
        with writes.cursor() as cur:
            cur.execute(f"INSERT INTO `{name}` VALUES (3, 3)")
            cur.execute(f"UPDATE `{name}` SET n = 10 WHERE id = 1")
        writes.close()
        stack.down(["mariadb"])
        failed = list(src.batches())  # the connection is refused: no batch, a fault begins
        assert failed == [] and src._failures >= 1
        stack.up(["mariadb"])
        writes = pymysql.connect(**settings, autocommit=True)
        with writes.cursor() as cur:
            cur.execute(f"DELETE FROM `{name}` WHERE id = 2")
            cur.execute(f"INSERT INTO `{name}` VALUES (4, 4)")
        writes.close()
        for _ in range(5):  # the backoff after the failure, then the binlog to its end
            _apply(state, list(src.batches()))
            if src._failures == 0:
                break
        assert src._failures == 0
        assert state == {
            b"1": {"id": 1, "n": 10},
            b"3": {"id": 3, "n": 3},
            b"4": {"id": 4, "n": 4},
        }
    finally:
        stack.up(["mariadb"])
        conn = pymysql.connect(**settings, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()
