"""The MySQL source connector (``type: mysql``): its config, how to build it, its probe.

Rows of a MySQL/MariaDB table or query, polled like Kafka Connect's JDBC source
(``producers.mysql_source`` reads them; ``producers.mysql_watermark`` keeps the position).
Needs SQLAlchemy and a driver: PyMySQL (``headrace[mysql]``), or mysqlclient
(``headrace[mysqlclient]``) for
``mysql+mysqldb://`` (about 3x the rows/s; ``headrace[mysqlclient]``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from headrace.config.base import ProblemKey, problems
from headrace.config.durations import Duration
from headrace.config.redact import redact_text
from headrace.config.sources import SourceBase
from headrace.plugins import Probe, SourcePlugin

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["PLUGIN", "MySQLMode", "MySQLSource"]

MySQLMode = Literal["bulk", "incrementing", "timestamp", "timestamp+incrementing"]

_MYSQL_URL_RE = re.compile(r"^(mysql|mariadb)(\+[a-z0-9_]+)?://", re.IGNORECASE)
_MODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "bulk": (),
    "incrementing": ("incrementing_column",),
    "timestamp": ("timestamp_column",),
    "timestamp+incrementing": ("timestamp_column", "incrementing_column"),
}


class MySQLSource(SourceBase):
    """Rows of a MySQL/MariaDB table or query, with Kafka Connect JDBC modes."""

    type: Literal["mysql"] = Field(description="Source type: mysql.")
    url: str = Field(
        description="SQLAlchemy URL, e.g. mysql+pymysql://user:password@host:3306/db "
        "(use ${ENV} or enc:<token> for the password); mysql+mysqldb:// uses the C driver "
        "(headrace[mysqlclient]), about 3x faster."
    )
    table: str | None = Field(default=None, description="Table to read (exclusive with query).")
    query: str | None = Field(
        default=None, description="SELECT to read instead of a table (exclusive with table)."
    )
    mode: MySQLMode = Field(
        description="How new rows are found. bulk: whole table every poll; "
        "incrementing: rows with a larger incrementing_column; "
        "timestamp: rows with a newer timestamp_column; "
        "timestamp+incrementing: both, for tables whose rows are updated."
    )
    incrementing_column: str | None = Field(
        default=None,
        description="Strictly increasing column (modes incrementing, timestamp+incrementing).",
    )
    timestamp_column: str | None = Field(
        default=None,
        description="Last-modified column (modes timestamp, timestamp+incrementing).",
    )
    timestamp_delay: Duration = Field(
        default=0.0,
        description="Only read rows older than now minus this delay, so rows committed late "
        "are not skipped (timestamp modes).",
    )
    batch_size: Annotated[int, Field(gt=0)] = Field(
        default=10_000, description="Rows fetched and produced per batch."
    )
    format: Literal["avro", "json"] = Field(
        default="json", description="Encoding of the produced records: avro or json."
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """The encoding of the produced records (the ``format`` key)."""
        return self.format

    @model_validator(mode="after")
    def _check(self) -> MySQLSource:
        found: list[tuple[ProblemKey, str]] = []
        if not _MYSQL_URL_RE.match(self.url):
            found.append(
                (
                    "url",
                    f"{redact_text(self.url)!r} is not a MySQL SQLAlchemy URL "
                    "(e.g. mysql+pymysql://user:password@host:3306/db)",
                )
            )
        if (self.table is None) == (self.query is None):
            found.append((None, "set exactly one of table or query"))
        needed = _MODE_COLUMNS[self.mode]
        for column in ("incrementing_column", "timestamp_column"):
            value = getattr(self, column)
            if column in needed and not value:
                found.append((column, f"required when mode is {self.mode!r}"))
            elif column not in needed and value:
                found.append((column, f"not used when mode is {self.mode!r}; remove it"))
        if "timestamp_delay" in self.model_fields_set and "timestamp" not in self.mode:
            found.append(("timestamp_delay", f"not used when mode is {self.mode!r}; remove it"))
        if self.format == "avro" and not self.schema_:
            found.append(("schema", "required when format is 'avro'"))
        if found:
            raise problems(found)
        return self


def build(pipeline: Pipeline, name: str, cfg: MySQLSource) -> tuple[Any, Any]:
    """(``MySQLRowSource``, its ``RecordEncoder``) for source ``name``."""
    from producers.encoder import RecordEncoder, make_codec
    from producers.mysql_source import MySQLRowSource, make_engine
    from schemas import JsonCodec

    required = [
        (k, getattr(cfg, k))
        for k in ("incrementing_column", "timestamp_column", "timestamp_field")
        if getattr(cfg, k)
    ]
    required += [("key", k) for k in cfg.key or ()]
    source = MySQLRowSource(
        name,
        make_engine(cfg.url, name, decimals_as_text=cfg.output_format == "json"),
        mode=cfg.mode,
        table=cfg.table,
        query=cfg.query,
        incrementing_column=cfg.incrementing_column,
        timestamp_column=cfg.timestamp_column,
        timestamp_delay=cfg.timestamp_delay,
        batch_size=cfg.batch_size,
        required_columns=required,
        parse_json=cfg.output_format == "json",
        aware_datetimes=cfg.output_format != "json" or cfg.schema_ is not None,
    )
    codec = make_codec(pipeline, cfg)
    if isinstance(codec, JsonCodec):
        codec = codec.as_naive_utc()  # the source's datetimes are UTC, left naive
    return source, RecordEncoder(codec, cfg.key, cfg.timestamp_field)


def probes(name: str, cfg: MySQLSource) -> list[Probe]:
    """The table (and the columns its mode needs), or that the query prepares."""
    return [("mysql table", cfg.table or "(query)", lambda timeout: _probe(name, cfg, timeout))]


def _probe(name: str, cfg: MySQLSource, timeout: float) -> tuple[bool, str]:
    import sqlalchemy as sa

    from headrace.clients import mysql_engine
    from headrace.errors import ConfigError
    from producers.mysql_catalog import table_types

    engine = mysql_engine(cfg.url, timeout=timeout)
    try:
        with engine.connect() as conn:
            if cfg.query:
                # The query is the user's own SQL by design; LIMIT 0 only prepares it.
                probe = f"SELECT * FROM ({cfg.query}) AS q LIMIT 0"  # noqa: S608
                conn.execute(sa.text(probe))
                return (True, "query prepares")
            assert cfg.table is not None
            try:
                columns = table_types(conn, name, cfg.table)
            except ConfigError as exc:
                return (False, str(exc))
            needed = [c for c in (cfg.incrementing_column, cfg.timestamp_column) if c]
            absent = [c for c in needed if c not in columns]
            if absent:
                listed = ", ".join(columns)
                return (False, f"column {absent[0]!r} not found (columns: {listed})")
            return (True, f"{len(columns)} columns")
    finally:
        engine.dispose()


PLUGIN = SourcePlugin(
    type="mysql",
    config=MySQLSource,
    build=build,
    probes=probes,
    requires=("sqlalchemy",),
    extra="mysql",
)
