"""The MySQL CDC source's view of the server: connection settings from a URL, the captured
tables (names or patterns) with their columns and primary keys, and the server's binlog
settings and the user's grants (what ``check --connect`` verifies)."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from headrace.errors import ConfigError
from producers.mysql_cdc_values import Converter, column_converter

__all__ = [
    "REQUIRED_SETTINGS",
    "Table",
    "connect",
    "connect_bulk",
    "connection_settings",
    "datetime_or_none",
    "is_mariadb",
    "load_table",
    "load_tables",
    "server_problems",
]

#: server variable -> the value CDC needs
REQUIRED_SETTINGS = {"log_bin": "1", "binlog_format": "ROW", "binlog_row_image": "FULL"}
_JSON_CHECK = re.compile(r"json_valid\(`([^`]+)`\)", re.IGNORECASE)


def connection_settings(url: str) -> dict[str, Any]:
    """PyMySQL keyword arguments (host, port, user, password, database) of a ``mysql://`` URL
    (``mysql+pymysql://`` and ``mariadb://`` too)."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("mysql", "mariadb") or not parts.hostname:
        raise ValueError(f"not a MySQL URL (mysql+pymysql://user:password@host:3306/db): {url!r}")
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError("the URL names no database (…:3306/<database>)")
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": database,
    }


def connect(settings: dict[str, Any], timeout: float = 10.0) -> Any:
    """A PyMySQL connection in UTC (``time_zone='+00:00'``), autocommit."""
    import pymysql

    args = {"charset": "utf8mb4", **settings, "connect_timeout": max(1, int(timeout))}
    conn = pymysql.connect(**args, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    return conn


def connect_bulk(settings: dict[str, Any], timeout: float = 10.0) -> Any:
    """A connection for bulk reads (the snapshot's chunks), in UTC, autocommit: mysqlclient
    (``MySQLdb``, C; ``headrace[mysqlclient]``) when it is installed, else PyMySQL
    (``connect``). Both give the source identical records (an integration test compares
    them on every column type); mysqlclient parses rows in C, 1.3-1.5x PyMySQL's snapshot
    rate here, and reads DATETIME/TIMESTAMP with ``datetime_or_none``.
    ``HEADRACE_CDC_DRIVER=pymysql`` in the environment forces PyMySQL."""
    if os.environ.get("HEADRACE_CDC_DRIVER", "").lower() != "pymysql":
        try:
            import MySQLdb
            from MySQLdb.constants import FIELD_TYPE
            from MySQLdb.converters import conversions
        except ImportError:
            pass
        else:
            conv = {**conversions, FIELD_TYPE.DATETIME: datetime_or_none}
            conv[FIELD_TYPE.TIMESTAMP] = datetime_or_none
            conn = MySQLdb.connect(
                conv=conv,
                host=settings["host"],
                port=int(settings["port"]),
                user=settings["user"],
                password=settings["password"],
                database=settings["database"],
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=max(1, int(timeout)),
            )
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
            return conn
    return connect(settings, timeout)


#: the text protocol's DATETIME/TIMESTAMP as the server writes it (ASCII digits only)
_CANONICAL_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
)


def datetime_or_none(text: str) -> Any:
    """mysqlclient's DATETIME/TIMESTAMP converter (``MySQLdb.times.DateTime_or_None``, Python
    code, ~1.8 us a value) with a fast path: text in the server's canonical form
    (``YYYY-MM-DD HH:MM:SS[.f{1,6}]``) is parsed by ``datetime.fromisoformat`` (C, ~0.5 us
    with the check), which gives the same datetime for it; anything else, and a value
    ``fromisoformat`` refuses (a zero date, day 31 of a 30-day month), goes to
    ``DateTime_or_None`` itself (None for those). A unit test compares the two."""
    if _CANONICAL_DATETIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    from MySQLdb.times import DateTime_or_None  # only here: an import per value costs

    return DateTime_or_None(text)


def is_mariadb(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return "mariadb" in str(cur.fetchone()[0]).lower()


@dataclass
class Table:
    """A captured table: columns in order, their converters, its primary key columns."""

    schema: str
    name: str
    columns: list[str]
    converters: dict[str, Converter]
    key: list[str]
    #: column -> the expression the snapshot selects instead of the column (FLOAT: its
    #: exact single-precision value, ``CAST(... AS DOUBLE)``; the text protocol rounds it)
    selects: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def load_tables(conn: Any, source: str, database: str, patterns: list[str]) -> list[Table]:
    """The tables of ``database`` matching ``patterns`` (names or ``fnmatch`` patterns such
    as ``order_*``); ConfigError when a pattern matches none or a table has no primary key."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (database,),
        )
        names = [str(r[0]) for r in cur.fetchall()]
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(
                f"source {source!r}: no table of database {database!r} matches {pattern!r} "
                f"(tables: {', '.join(names) or 'none'}); fix `tables`",
                key=f"sources.{source}.tables",
            )
        chosen += [h for h in hits if h not in chosen]
    return [load_table(conn, source, database, n) for n in chosen]


def load_table(conn: Any, source: str, database: str, name: str) -> Table:
    """One table's columns (in order, with converters) and primary key, as the server has
    them now; ConfigError when it has no primary key or does not exist."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLUMN_KEY "
            "FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (database, name),
        )
        rows = cur.fetchall()
        json_columns: set[str] = set()
        try:  # MariaDB: JSON is LONGTEXT with a json_valid() check
            cur.execute(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (database, name),
            )
            for (clause,) in cur.fetchall():
                json_columns.update(_JSON_CHECK.findall(str(clause)))
        except Exception:
            json_columns = set()
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (database, name),
        )
        key = [str(r[0]) for r in cur.fetchall()]
    if not rows:
        raise ConfigError(
            f"source {source!r}: table {database}.{name} does not exist; fix `tables`",
            key=f"sources.{source}.tables",
        )
    if not key:
        raise ConfigError(
            f"source {source!r}: table {database}.{name} has no primary key; change data capture "
            "keys records by it: add one (ALTER TABLE … ADD PRIMARY KEY) or leave the table out",
            key=f"sources.{source}.tables",
        )
    columns = [str(r[0]) for r in rows]
    converters = {
        str(c): column_converter("json" if c in json_columns else str(dt), str(ct))
        for c, dt, ct, _k in rows
    }
    selects = {
        str(c): f"CAST(`{c}` AS DOUBLE)" for c, dt, _ct, _k in rows if str(dt).lower() == "float"
    }
    return Table(database, name, columns, converters, key, selects)


def server_problems(conn: Any) -> list[str]:
    """What the server or the user's grants lack for CDC, each naming the fix (empty: ready)."""
    found: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id")
        log_bin, fmt, image, server_id = cur.fetchone()
        if str(log_bin) != "1":
            found.append("log_bin is OFF: start the server with --log-bin (needs a restart)")
        if str(fmt).upper() != "ROW":
            found.append(
                f"binlog_format is {fmt}: SET GLOBAL binlog_format = 'ROW' (and in my.cnf)"
            )
        if str(image).upper() != "FULL":
            found.append(
                f"binlog_row_image is {image}: SET GLOBAL binlog_row_image = 'FULL' (and in my.cnf)"
            )
        if not server_id:
            found.append("server_id is 0: set server_id to a non-zero id (--server-id=1)")
        try:
            cur.execute("SELECT @@binlog_row_metadata")
            (metadata,) = cur.fetchone()
        except Exception:  # a server before MariaDB 10.5 / MySQL 8.0.14 has no such setting
            metadata = None
        if str(metadata).upper() != "FULL":
            found.append(
                f"binlog_row_metadata is {metadata}: SET GLOBAL binlog_row_metadata = 'FULL' "
                "(and in my.cnf); without it row events carry no column names and the binlog "
                "library reads ENUM/SET values as null"
            )
        cur.execute("SHOW GRANTS")
        grants = " ".join(str(r[0]).upper() for r in cur.fetchall())
    if "ALL PRIVILEGES ON *.*" not in grants:
        for privilege in ("REPLICATION SLAVE", "REPLICATION CLIENT"):
            alt = "BINLOG MONITOR" if privilege == "REPLICATION CLIENT" else privilege
            if privilege not in grants and alt not in grants:
                found.append(
                    f"the user lacks {privilege}: GRANT REPLICATION SLAVE, REPLICATION CLIENT "
                    "ON *.* TO '<user>'@'%'"
                )
                break
    return found
