"""``type: mysql``: rows of a table (or a ``query:``) into records, through SQLAlchemy.

At start the table and every configured column (incrementing, timestamp, key, event time) is
checked against the database catalog; a wrong name stops with a ``ConfigError`` that lists the
real columns. Identifiers are then quoted by the dialect; values are always bound parameters.
Each poll is one SELECT streamed with the driver's server-side cursor (tuples, no per-row
SQLAlchemy objects) and fetched ``batch_size`` rows at a time; see ``mysql_watermark`` for
what each mode reads. ``mysql+mysqldb://`` (mysqlclient, C) reads about 3x faster than
``mysql+pymysql://``; a URL whose driver is missing is a ConfigError naming the fix.

Types: DECIMAL -> Decimal (exact; for JSON output the server's exact text, which is what JSON
carries anyway); DATETIME/TIMESTAMP -> UTC datetime (the session runs with
``time_zone='+00:00'``; made tz-aware unless ``aware_datetimes=False``, for an encoder that
writes naive datetimes as UTC itself); JSON -> the parsed value (JSON output; text for Avro);
BLOB -> bytes; NULL -> None.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from headrace.clients import mysql_engine
from headrace.errors import ConfigError, HeadraceError
from producers.batch import Batch, Rows
from producers.mysql_catalog import table_types
from producers.mysql_watermark import Watermark, WatermarkTracker, where_clause

__all__ = ["MySQLAccessError", "MySQLRowSource", "check_driver", "driver_of", "make_engine"]

log = logging.getLogger(__name__)


class MySQLAccessError(HeadraceError):
    """The database could not be reached or queried."""


#: SQLAlchemy driver name -> (importable module, package that provides it).
_DRIVERS = {
    "mysqldb": ("MySQLdb", "mysqlclient"),
    "pymysql": ("pymysql", "PyMySQL"),
}


def driver_of(url: str) -> str:
    """The DBAPI driver a SQLAlchemy URL names (``mysql://`` means SQLAlchemy's default,
    mysqldb)."""
    scheme = url.split("://", 1)[0]
    _, _, driver = scheme.partition("+")
    return driver or "mysqldb"


def check_driver(url: str, source: str = "") -> None:
    """ConfigError naming the driver, its package and the fix when the URL's MySQL driver is
    not installed (``mysql+mysqldb://`` and ``mysql://`` need mysqlclient, a C extension)."""
    driver = driver_of(url)
    module, package = _DRIVERS.get(driver, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return
    where = f"source {source!r}: " if source else ""
    if driver == "mysqldb":
        fix = (
            "install it with `pip install 'headrace[mysqlclient]'` (it builds against the MariaDB "
            "client library: `apt-get install libmariadb-dev pkg-config` first), or use the "
            "pure-Python driver: mysql+pymysql://"
        )
    else:
        fix = f"pip install 'headrace[mysql]' (or {package})"
    raise ConfigError(
        f"{where}the URL's MySQL driver {driver!r} needs the {package} package, which is not "
        f"installed; {fix}",
        key=f"sources.{source}.url" if source else None,
    )


def _fast_datetime(fallback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A DATETIME/TIMESTAMP converter: the C ``datetime.fromisoformat`` (a few times faster
    than the drivers' Python parsers); anything it does not take (zero dates) goes to the
    driver's own converter."""
    fromiso = datetime.fromisoformat

    def convert(text_value: Any) -> Any:
        try:
            return fromiso(text_value if type(text_value) is str else text_value.decode())
        except (ValueError, AttributeError, UnicodeDecodeError):
            return fallback(text_value)

    return convert


def _conversions(driver: str, decimals_as_text: bool = False) -> dict[Any, Any] | None:
    """The driver's conversion table with fast datetime parsing, and DECIMAL left as the
    server's exact text when ``decimals_as_text`` (what JSON output writes anyway, without a
    Decimal per value); None: the driver's defaults."""
    try:
        if driver == "mysqldb":
            from MySQLdb.constants import FIELD_TYPE
            from MySQLdb.converters import conversions
        elif driver == "pymysql":
            from pymysql.constants import FIELD_TYPE
            from pymysql.converters import conversions
        else:
            return None
    except ImportError:
        return None
    conv = dict(conversions)
    for field_type in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        conv[field_type] = _fast_datetime(conversions[field_type])
    if decimals_as_text:
        for field_type in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
            conv[field_type] = _text
    return conv


def _text(value: Any) -> str:
    return value if type(value) is str else bytes(value).decode()


def make_engine(url: str, source: str = "", *, decimals_as_text: bool = False) -> Engine:
    """An engine whose sessions run in UTC, with fast datetime conversion (and DECIMAL as
    exact text, see :func:`_conversions`); ConfigError when the URL's driver is not installed
    (see :func:`check_driver`)."""
    check_driver(url, source)
    conv = _conversions(driver_of(url), decimals_as_text)
    connect_args = {"conv": conv} if conv is not None else {}
    engine: Engine = mysql_engine(url, pool_pre_ping=True, pool_size=2, connect_args=connect_args)

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
                    types = table_types(conn, self.name, self.table)
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
            cols, fetchmany = self._execute(conn, sql, params)
            conv = [(c, f) for c, f in self._converters if c in cols]
            ts_i = cols.index(self.ts_col) if self.ts_col in cols else None
            id_i = cols.index(self.inc_col) if self.inc_col in cols else None
            bulk = self.mode == "bulk"
            done_rows = 0
            while True:
                rows = fetchmany(self.batch_size)
                if not rows:
                    break
                # the hot path: one dict per row, conversions column by column
                values = [dict(zip(cols, row, strict=True)) for row in rows]
                for c, f in conv:
                    for v in values:
                        v[c] = f(v[c])
                tracker.see_batch(
                    [r[ts_i] for r in rows] if ts_i is not None else (),
                    [rows[-1][id_i]] if id_i is not None else (),
                )
                wm = tracker.safe()
                self.watermark = wm
                where = self._positions(values, done_rows if bulk else None)
                done_rows += len(rows)
                yield Batch(Rows(values, None, where), wm.to_state(self.mode))
            tracker.finish()
            self.watermark = tracker.safe()
            finished = True
            yield Batch([], self.watermark.to_state(self.mode))
        except SQLAlchemyError as exc:
            raise MySQLAccessError(
                f"source {self.name!r}: reading {self._what()} failed: "
                f"{str(getattr(exc, 'orig', exc))[:300]}"
            ) from None
        except self._dbapi_errors as exc:
            raise MySQLAccessError(
                f"source {self.name!r}: reading {self._what()} failed: {str(exc)[:300]}"
            ) from None
        finally:
            if finished:
                conn.close()
            else:
                # stopped mid-stream: closing a streaming cursor would read the rest first
                conn.invalidate()
                conn.close()

    def _execute(
        self, conn: Connection, sql: str, params: dict[str, Any]
    ) -> tuple[list[str], Callable[[int], Sequence[Any]]]:
        """Run the SELECT streamed; (column names, fetchmany). With a MySQL driver that has a
        server-side cursor class (PyMySQL, mysqlclient) rows come straight from the driver's
        ``SSCursor`` as tuples, without SQLAlchemy's per-row objects; else SQLAlchemy's
        ``stream_results``."""
        sscursor = _sscursor(self.engine.dialect.dbapi)
        if sscursor is None:
            result = conn.execute(text(sql), params)
            return list(result.keys()), result.fetchmany
        compiled = text(sql).bindparams(**params).compile(dialect=self.engine.dialect)
        dbapi_conn: Any = conn.connection.dbapi_connection
        cursor = dbapi_conn.cursor(sscursor)
        args: Any = compiled.params
        if compiled.positional:  # mysqlclient's paramstyle is "format" (%s)
            args = tuple(compiled.params[n] for n in compiled.positiontup or ())
        cursor.execute(str(compiled), args)  # args even when empty: unescapes %%
        cols = [d[0] for d in cursor.description]
        return cols, cursor.fetchmany

    def _positions(
        self, values: list[dict[str, Any]], first_row: int | None
    ) -> Callable[[int], dict[str, Any]]:
        """Source positions of a batch's rows, made only for a dead letter: the row number
        in bulk mode (``first_row`` rows came before), else the timestamp and id."""
        ts_col, inc_col = self.ts_col, self.inc_col

        def where(i: int) -> dict[str, Any]:
            if first_row is not None:
                return {"row": first_row + i + 1}
            pos: dict[str, Any] = {}
            value = values[i]
            if ts_col and value.get(ts_col) is not None:
                pos["ts"] = value[ts_col]  # JSON-encoded (ISO-8601) only for a dead letter
            if inc_col and value.get(inc_col) is not None:
                pos["id"] = value[inc_col]
            return pos

        return where

    @property
    def _dbapi_errors(self) -> type[Exception]:
        dbapi = self.engine.dialect.dbapi
        return getattr(dbapi, "Error", SQLAlchemyError)


def _sscursor(dbapi: Any) -> Any:
    """The driver's server-side (unbuffered) cursor class, or None."""
    try:
        module = importlib.import_module(f"{dbapi.__name__}.cursors")
    except (AttributeError, ImportError):
        return None
    return getattr(module, "SSCursor", None)
