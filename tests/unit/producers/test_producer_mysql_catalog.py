"""Issue #15, defect 6: a table name that is not in the catalog (mistyped, or an injected
``orders; DROP TABLE shop.users`` that splits at its last '.') is refused with the tables of
the database actually searched, not "(tables: none)" of a database that does not exist.
The MySQL source is driven through a fake catalog (information_schema answered in Python);
``check --connect``'s MySQL probe reads the catalog through the same ``table_types``."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.errors import ConfigError
from producers.mysql_source import MySQLRowSource


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def all(self) -> list[tuple[Any, ...]]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalars(self) -> list[Any]:
        return [r[0] for r in self.rows]


class _Catalog:
    """A connection (and its engine) answering the information_schema queries of a server
    with ``databases`` ({database: {table: [columns]}}) and ``current`` as the URL's one."""

    def __init__(self, databases: dict[str, dict[str, list[str]]], current: str | None) -> None:
        self.databases = databases
        self.current = current

    def connect(self) -> _Catalog:
        return self

    def __enter__(self) -> _Catalog:
        return self

    def __exit__(self, *_exc: Any) -> None:
        return None

    def execute(self, clause: Any, params: dict[str, Any] | None = None) -> _Result:
        sql = str(clause)
        params = params or {}
        # COALESCE(:s, DATABASE()) or a plain :s
        schema = params.get("s") or (self.current if "DATABASE()" in sql else None)
        tables = self.databases.get(schema or "", {})
        if sql.strip() == "SELECT DATABASE()":
            return _Result([(self.current,)])
        if "information_schema.SCHEMATA" in sql:
            return _Result([(int(params["s"] in self.databases),)])
        if "information_schema.COLUMNS" in sql:
            return _Result([(c, "int") for c in tables.get(params["t"], [])])
        if "information_schema.TABLES" in sql:
            return _Result([(t,) for t in sorted(tables)])
        if "CHECK_CONSTRAINTS" in sql:
            return _Result([])
        raise AssertionError(f"unexpected SQL: {sql}")


SERVER = {"shop": {"orders": ["id", "updated"], "users": ["id"]}, "other": {"audit": ["id"]}}


def _refusal(table: str, current: str | None = "shop") -> str:
    with pytest.raises(ConfigError) as err:
        MySQLRowSource("o", _Catalog(SERVER, current), mode="bulk", table=table)  # type: ignore[arg-type]
    assert err.value.key == "sources.o.table"
    return str(err.value)


def test_an_injected_table_name_lists_the_tables_of_the_urls_database() -> None:
    msg = _refusal("orders; DROP TABLE shop.users")
    assert "tables: none" not in msg
    assert "no database 'orders; DROP TABLE shop'" in msg
    assert "the URL's database 'shop' has tables: orders, users" in msg
    assert "fix `table`" in msg


def test_a_mistyped_table_lists_the_tables_of_the_database_searched() -> None:
    assert "table 'ordres' not found in database 'shop' (tables: orders, users)" in _refusal(
        "ordres"
    )
    assert "table 'other.orders' not found in database 'other' (tables: audit)" in _refusal(
        "other.orders"
    )
    assert "the URL names no database" in _refusal("orders", current=None)


def test_a_table_that_exists_is_read_with_its_columns() -> None:
    src = MySQLRowSource("o", _Catalog(SERVER, "shop"), mode="bulk", table="other.audit")  # type: ignore[arg-type]
    assert src.columns == ["id"]
