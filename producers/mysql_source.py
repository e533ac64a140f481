"""``type: mysql``: rows of a table (or a ``query:``) into records, through SQLAlchemy.

At start the table and every configured column (incrementing, timestamp, key, event time) is
checked against the database catalog; a wrong name stops with a ``ConfigError`` that lists the
real columns. Identifiers are then quoted by the dialect; values are always bound parameters.
Each poll is one SELECT streamed with a server-side cursor (``stream_results``) and fetched
``batch_size`` rows at a time; see ``mysql_watermark`` for what each mode reads.

Types: DECIMAL -> Decimal (exact); DATETIME/TIMESTAMP -> UTC datetime (the session runs
with ``time_zone='+00:00'``; made tz-aware unless ``aware_datetimes=False``, for an encoder
that writes naive datetimes as UTC itself); JSON -> the parsed value (JSON output; text for
Avro); BLOB -> bytes; NULL -> None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from headrace.errors import ConfigError, HeadraceError
from producers.batch import Batch
from producers.mysql_watermark import Watermark, WatermarkTracker, where_clause
from schemas import Record

__all__ = ["MySQLAccessError", "MySQLRowSource", "make_engine"]

log = logging.getLogger(__name__)


class MySQLAccessError(HeadraceError):
    """The database could not be reached or queried."""


def make_engine(url: str) -> Engine:
    """An engine whose sessions run in UTC."""
    engine = create_engine(url, pool_pre_ping=True, pool_size=2)

    @event.listens_for(engine, "connect")
    def _utc(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SET time_zone = '+00:00'")
        cur.close()

    return engine


def _utc(v: Any) -> Any:
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v


def _json(v: Any) -> Any:
    if isinstance(v, str | bytes):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


class MySQLRowSource:
    """One MySQL source (see the module docstring)."""

    unit = "rows"

    def __init__(
        self,
        name: str,
        engine: Engine,
        *,
        mode: str,
        table: str | None = None,
        query: str | None = None,
        incrementing_column: str | None = None,
        timestamp_column: str | None = None,
        timestamp_delay: float = 0.0,
        batch_size: int = 10_000,
        required_columns: Sequence[tuple[str, str]] = (),
        parse_json: bool = True,
        aware_datetimes: bool = True,
    ) -> None:
        self.name = name
        self.engine = engine
        self.mode = mode
        self.table = table
        self.query = query
        self.inc_col = incrementing_column
        self.ts_col = timestamp_column
        self.delay = timestamp_delay
        self.batch_size = batch_size
        self.parse_json = parse_json
        self.aware_datetimes = aware_datetimes
        self.watermark = Watermark()
        self.columns: list[str] = []
        self._converters: list[tuple[str, Callable[[Any], Any]]] = []
        self._check_catalog(list(required_columns))

    # -- catalog --------------------------------------------------------------------------

    def _what(self) -> str:
        return f"table {self.table!r}" if self.table else "the query"

    def _check_catalog(self, required: list[tuple[str, str]]) -> None:
        """Fill ``columns`` and converters; ConfigError naming a missing table or column."""
        types: dict[str, str] = {}
        try:
            with self.engine.connect() as conn:
                if self.table:
                    schema, _, table = self.table.rpartition(".")
                    rows = conn.execute(
                        text(
                            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                            "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t "
                            "ORDER BY ORDINAL_POSITION"
                        ),
                        {"s": schema or None, "t": table},
                    ).all()
                    if not rows:
                        tables = conn.execute(
                            text(
                                "SELECT TABLE_NAME FROM information_schema.TABLES "
                                "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) ORDER BY 1"
                            ),
                            {"s": schema or None},
                        ).scalars()
                        listed = ", ".join(list(tables)[:50]) or "none"
                        raise ConfigError(
                            f"source {self.name!r}: table {self.table!r} not found "
                            f"(tables: {listed}); fix `table`",
                            key=f"sources.{self.name}.table",
                        )
                    types = {str(r[0]): str(r[1]).lower() for r in rows}
                    for col in self._json_checked(conn, schema or None, table):
                        types[col] = "json"
                else:
                    # the query is the operator's own SQL from the pipeline file
                    probe = f"SELECT * FROM ({self.query}) AS hr_q LIMIT 0"  # noqa: S608
                    result = conn.execute(text(probe))
                    types = {str(k): "" for k in result.keys()}
        except SQLAlchemyError as exc:
            raise MySQLAccessError(
                f"source {self.name!r}: cannot read the catalog of {self._what()}: "
                f"{type(exc).__name__}: {str(exc.orig if hasattr(exc, 'orig') else exc)[:300]}"
            ) from None
        self.columns = list(types)
        for key, column in required:
            if column not in types:
                raise ConfigError(
                    f"source {self.name!r}: column {column!r} not found in {self._what()} "
                    f"(columns: {', '.join(self.columns)}); fix `{key}`",
                    key=f"sources.{self.name}.{key}",
                )
        for col, typ in types.items():
            if typ in ("datetime", "timestamp") and self.aware_datetimes:
                self._converters.append((col, _utc))
            elif typ == "json" and self.parse_json:
                self._converters.append((col, _json))

    @staticmethod
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

    # -- lifecycle ------------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        """Resume after a stored watermark (another mode's state starts over)."""
        self.watermark = Watermark.from_state(state, self.mode)

    def close(self) -> None:
        self.engine.dispose()

    def _sql(self) -> tuple[str, set[str]]:
        quote = self.engine.dialect.identifier_preparer.quote
        if self.table:
            source = ".".join(quote(part) for part in self.table.split("."))
        else:
            source = f"({self.query}) AS hr_q"
        ts = quote(self.ts_col) if self.ts_col else ""
        inc = quote(self.inc_col) if self.inc_col else ""
        where, order, params = where_clause(self.mode, ts, inc, self.watermark)
        sql = f"SELECT * FROM {source}"  # noqa: S608 - identifiers are catalog-checked and quoted
        if where:
            sql += f" WHERE {where}"
        if order:
            sql += f" ORDER BY {order}"
        return sql, params

    def batches(self) -> Generator[Batch, None, None]:
        """One poll: the rows after the watermark, ``batch_size`` at a time."""
        sql, names = self._sql()
        params: dict[str, Any] = {}
        tracker = WatermarkTracker(self.mode, self.watermark)
        conn = self.engine.connect().execution_options(stream_results=True)
        finished = False
        try:
            if "hr_until" in names:
                now = conn.execute(text("SELECT UTC_TIMESTAMP(6)")).scalar_one()
                params["hr_until"] = now - timedelta(seconds=self.delay)
            if "hr_ts" in names:
                params["hr_ts"] = (
                    self.watermark.ts.replace(tzinfo=None) if self.watermark.ts else None
                )
            if "hr_id" in names:
                params["hr_id"] = self.watermark.id
            result = conn.execute(text(sql), params)
            cols = list(result.keys())
            conv = [(c, f) for c, f in self._converters if c in cols]
            ts_i = cols.index(self.ts_col) if self.ts_col in cols else None
            id_i = cols.index(self.inc_col) if self.inc_col in cols else None
            see = tracker.see
            bulk = self.mode == "bulk"
            row_no = 0
            while True:
                rows = result.fetchmany(self.batch_size)
                if not rows:
                    break
                records = []
                for row in rows:
                    value = dict(zip(cols, row, strict=True))
                    for c, f in conv:
                        value[c] = f(value[c])
                    row_no += 1
                    ts = row[ts_i] if ts_i is not None else None
                    rid = row[id_i] if id_i is not None else None
                    see(ts, rid)
                    if bulk:
                        pos: dict[str, Any] = {"row": row_no}
                    else:
                        pos = {}
                        if ts is not None:
                            pos["ts"] = ts  # JSON-encoded (ISO-8601) only for a dead letter
                        if rid is not None:
                            pos["id"] = rid
                    records.append(Record(value, None, None, [], pos))
                wm = tracker.safe()
                self.watermark = wm
                yield Batch(records, wm.to_state(self.mode))
            tracker.finish()
            self.watermark = tracker.safe()
            finished = True
            yield Batch([], self.watermark.to_state(self.mode))
        except SQLAlchemyError as exc:
            raise MySQLAccessError(
                f"source {self.name!r}: reading {self._what()} failed: "
                f"{str(getattr(exc, 'orig', exc))[:300]}"
            ) from None
        finally:
            if finished:
                conn.close()
            else:
                # stopped mid-stream: closing a streaming cursor would read the rest first
                conn.invalidate()
                conn.close()
