"""The fast row decoder (``producers.mysql_cdc_rows``) against ``mysql-replication`` on the
stack's MariaDB: every supported column type, edge values and NULLs, written, updated and
deleted, read from the binlog twice: the fast decoder's row images equal the library's,
value for value and type for type; and the source's records are the same bytes either way."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pymysql
import pytest

from producers import mysql_cdc_rows
from producers.mysql_cdc_catalog import connection_settings
from producers.mysql_cdc_rows import fast_rows
from producers.mysql_cdc_source import CDCSource

pytestmark = pytest.mark.integration

COLUMNS = (
    "id BIGINT PRIMARY KEY, t TINYINT, tu TINYINT UNSIGNED, sm SMALLINT, smu SMALLINT UNSIGNED, "
    "mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bu BIGINT UNSIGNED, "
    "y YEAR, f FLOAT, db DOUBLE, d DECIMAL(12,2), d0 DECIMAL(5,0), d10 DECIMAL(10,10), "
    "dbig DECIMAL(65,30), d9 DECIMAL(18,9), vc VARCHAR(20), vl VARCHAR(300), c CHAR(3), "
    "lat VARCHAR(10) CHARACTER SET latin1, tx TEXT, mt MEDIUMTEXT, bl BLOB, lb LONGBLOB, "
    "vb VARBINARY(8), bi BINARY(4), j JSON, da DATE, dt DATETIME, dt1 DATETIME(1), "
    "dt3 DATETIME(3), dt6 DATETIME(6), ts TIMESTAMP NULL, ts2 TIMESTAMP(2) NULL, "
    "ts6 TIMESTAMP(6) NULL"
)
ROWS = [
    "(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, "
    "18446744073709551615, 2155, 3.4e38, -1.7976931348623157e308, -9999999999.99, 99999, "
    "0.9999999999, -12345678901234567890123456789012345.123456789012345678901234567890, "
    "-123456789.123456789, 'héllo ☃ 😀', REPEAT('x', 300), 'ab', 'café', "
    "REPEAT('t', 1000), 'mt', X'00FF10', REPEAT(X'AB', 70000), X'0001', X'01', "
    '\'{"a": [1, "x", null], "b": {"c": 1.5}}\', \'9999-12-31\', \'1000-01-01 00:00:00\', '
    "'2024-01-02 03:04:05.9', '2024-01-02 03:04:05.123', '2024-02-29 23:59:59.999999', "
    "'1970-01-01 00:00:01', '2038-01-19 03:14:07.99', '2024-01-02 03:04:05.000001')",
    "(2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 0, 1901, -0.5, 1e-300, -0.01, -1, "
    "-0.0000000001, 0.000000000000000000000000000001, 0.000000001, '', '', '', '', '', '', X'', "
    "X'', X'', X'0000', 'null', '0001-01-01', '2024-01-02 03:04:05', "
    "'2024-01-02 03:04:05.0', '2024-01-02 03:04:05.000', '2024-01-02 03:04:05.000000', "
    "'2024-06-30 12:00:00', '2024-06-30 12:00:00.01', '2024-06-30 12:00:00.5')",
    "(3" + ", NULL" * 36 + ")",
    "(4, 0, 1, 0, 1, 0, 1, 0, 1, 1, 2000, 0.1, 0.1, 0.00, 0, 0.0000000000, 0, 0, 'a', 'b', "
    "'c', 'd', 'e', 'f', X'FF', X'FE', X'FD', X'FC000000', '[]', '2000-02-29', "
    "'2000-02-29 00:00:00', '2000-02-29 00:00:00.1', '2000-02-29 00:00:00.01', "
    "'2000-02-29 00:00:00.000010', NULL, NULL, NULL)",
]


def _reader(settings: dict[str, Any], start: tuple[str, int]) -> Any:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    logging.getLogger("pymysqlreplication").setLevel(logging.WARNING)
    return BinLogStreamReader(
        connection_settings=dict(settings),
        server_id=6998,
        log_file=start[0],
        log_pos=start[1],
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        is_mariadb=False,
        freeze_schema=True,
    )


def _typed(rows: list[dict[str, Any]]) -> list[Any]:
    """The row images only (not the library's none_sources), each value with its type."""
    return [
        {
            k: {c: (type(v).__name__, v) for c, v in img.items()}
            for k, img in row.items()
            if k in ("values", "before_values", "after_values")
        }
        for row in rows
    ]


def test_fast_rows_decode_every_supported_type_as_the_library(mysql_url: str) -> None:
    settings = connection_settings(mysql_url)
    name = f"cdcrows_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE `{name}` ({COLUMNS})")
            cur.execute("SHOW MASTER STATUS")
            file, pos = cur.fetchone()[:2]
            cur.execute(f"INSERT INTO `{name}` VALUES {', '.join(ROWS)}")
            names = [c.split()[0] for c in COLUMNS.split(", ")[1:]]
            swap = ", ".join(
                f"`{n}` = (SELECT `{n}` FROM (SELECT * FROM `{name}`) o "
                f"WHERE o.id = 5 - `{name}`.id)"
                for n in names
            )
            cur.execute(f"UPDATE `{name}` SET {swap}")  # every row takes another's values
            cur.execute(f"DELETE FROM `{name}` WHERE id IN (1, 3)")
        library, fast = _reader(settings, (file, pos)), _reader(settings, (file, pos))
        events = 0
        try:
            for a, b in zip(library, fast, strict=True):
                if getattr(a, "table", None) != name:
                    continue
                mine = fast_rows(b)
                assert mine is not None, f"{type(b).__name__} left to the library"
                for m, lib in zip(_typed(mine), _typed(a.rows), strict=True):
                    for k in lib:
                        diff = {c: (m[k].get(c), v) for c, v in lib[k].items() if m[k].get(c) != v}
                        assert not diff, f"{type(a).__name__} {k}: (fast, library) {diff}"
                assert _typed(mine) == _typed(a.rows)
                events += 1
        finally:
            library.close()
            fast.close()
        assert events >= 3  # insert, update, delete (a large row event is split)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()


def test_the_source_gives_the_same_records_with_either_decoder(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = connection_settings(mysql_url)
    name = f"cdcrows_{uuid.uuid4().hex[:6]}"
    conn = pymysql.connect(**settings, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE `{name}` ({COLUMNS})")
        src = CDCSource("cdc_rows", settings, tables=[name], snapshot="never")
        src.restore(None)
        list(src.batches())
        start = src.position
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{name}` VALUES {', '.join(ROWS)}")
            cur.execute(f"UPDATE `{name}` SET t = t - 1, vc = CONCAT(vc, 'ü') WHERE id IN (2, 4)")
            cur.execute(f"DELETE FROM `{name}` WHERE id = 1")
        decoded: list[bool] = []  # whether the fast path took each row event

        def counted(ev: Any) -> Any:
            rows = fast_rows(ev)
            decoded.append(rows is not None)
            return rows

        monkeypatch.setattr("producers.mysql_cdc_source.fast_rows", counted)
        got = {}
        for enabled in (True, False):
            monkeypatch.setattr(mysql_cdc_rows, "ENABLED", enabled)
            src.close()
            src.position = start
            records = []
            for b in src.batches():
                assert not b.poison, b.poison
                enc = b.rows().encoded
                if enc is not None:
                    heads = enc.headers or [None] * len(enc.datas)
                    records += list(zip(enc.keys or [], enc.datas, heads, strict=True))
            got[enabled] = records
            assert decoded and all(decoded) is enabled and any(decoded) is enabled
            decoded.clear()
        assert len(got[True]) == 4 + 2 + 1
        assert got[True] == got[False]
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
        conn.close()
