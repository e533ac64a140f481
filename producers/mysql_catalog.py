"""The MySQL/MariaDB catalog of a source's ``table``: its columns and their types, or a
``ConfigError`` that lists the tables of the database that was searched."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from headrace.errors import ConfigError

__all__ = ["table_types"]

#: Tables listed at most in a not-found error.
LISTED = 50


def table_types(conn: Any, source: str, name: str) -> dict[str, str]:
    """{column: lower-case data type} of table ``name`` (``table`` or ``database.table``, the
    database part being what comes before the last '.'), in column order; MariaDB's
    JSON-checked LONGTEXT columns are "json". ConfigError (key ``sources.<source>.table``)
    when there is no such table. ``conn``: a SQLAlchemy connection."""
    schema, _, table = name.rpartition(".")
    rows = conn.execute(
        text(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t "
            "ORDER BY ORDINAL_POSITION"
        ),
        {"s": schema or None, "t": table},
    ).all()
    if not rows:
        raise table_not_found(conn, source, name, schema or None)
    types = {str(r[0]): str(r[1]).lower() for r in rows}
    for col in _json_checked(conn, schema or None, table):
        types[col] = "json"
    return types


def table_not_found(conn: Any, source: str, name: str, schema: str | None) -> ConfigError:
    """The error for table ``name`` (database part ``schema``) missing from the catalog. It
    lists the tables of the database searched: ``schema`` when that database exists, else
    the URL's, since the "database" part of a mistyped or injected name (say
    ``orders; DROP TABLE shop.users``) is usually no database at all."""
    current = conn.execute(text("SELECT DATABASE()")).scalar()
    exists = schema is None or bool(
        conn.execute(
            text("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :s"),
            {"s": schema},
        ).scalar()
    )
    what = f"source {source!r}: table {name!r} not found"
    fix = "fix `table` (a table name, or database.table)"
    key = f"sources.{source}.table"
    if not exists:
        tables = (
            f"the URL's database {current!r} has tables: {_tables(conn, current)}"
            if current is not None
            else "the URL names no database"
        )
        return ConfigError(
            f"{what}: there is no database {schema!r} (the part before the last '.'); "
            f"{tables}; {fix}",
            key=key,
        )
    searched = schema if schema is not None else current
    if searched is None:  # no database part, and the URL names no database
        return ConfigError(
            f"{what}: the URL names no database; add it to the URL (.../DATABASE) or {fix}",
            key=key,
        )
    return ConfigError(
        f"{what} in database {searched!r} (tables: {_tables(conn, searched)}); {fix}", key=key
    )


def _tables(conn: Any, database: str) -> str:
    """The first ``LISTED`` table names of ``database``, comma-separated ("none")."""
    found = conn.execute(
        text("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s ORDER BY 1"),
        {"s": database},
    ).scalars()
    return ", ".join(str(t) for t in list(found)[:LISTED]) or "none"


def _json_checked(conn: Any, schema: str | None, table: str) -> list[str]:
    """MariaDB stores JSON as LONGTEXT with a json_valid() check: find those columns."""
    try:
        rows = conn.execute(
            text(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t"
            ),
            {"s": schema, "t": table},
        ).scalars()
    except SQLAlchemyError:
        return []
    out = []
    for clause in rows:
        c = str(clause).lower().replace(" ", "")
        if c.startswith("json_valid(`") and c.endswith("`)"):
            out.append(str(clause).strip()[len("json_valid(`") : -2])
    return out
