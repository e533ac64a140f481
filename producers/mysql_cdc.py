"""The MySQL change-data-capture source connector (``type: mysql_cdc``): its config, how to
build it, its probes.

Every insert, update and delete of MySQL/MariaDB tables, read from the binlog with
``mysql-replication`` (pure Python, Apache-2.0; ``headrace[mysql_cdc]``), after a consistent
snapshot (``producers.mysql_cdc_source``). Records are keyed by the primary key; values typed
from the table's schema (``producers.mysql_cdc_values``). The server needs ``log_bin``,
``binlog_format=ROW``, ``binlog_row_image=FULL`` (and ``binlog_row_metadata=FULL`` so row
events carry column names), a ``server_id``, and the user REPLICATION SLAVE and REPLICATION
CLIENT (``check --connect`` says what is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from headrace.config.base import ProblemKey, problems
from headrace.config.durations import PositiveDuration
from headrace.config.redact import redact_text
from headrace.config.sources import SourceBase
from headrace.plugins import Probe, SourcePlugin

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["PLUGIN", "MySQLCDCSource"]


class MySQLCDCSource(SourceBase):
    """Change data capture of MySQL/MariaDB tables from the binlog, snapshot first."""

    type: Literal["mysql_cdc"] = Field(description="Source type: mysql_cdc.")
    url: str = Field(
        description="URL of the database whose tables are captured: "
        "mysql+pymysql://user:password@host:3306/db (${ENV} or enc:<token> for the password)."
    )
    tables: Annotated[list[str], Field(min_length=1)] = Field(
        description="Tables to capture: names or patterns (order_*) of the URL's database; "
        "each needs a primary key."
    )
    snapshot: Literal["initial", "never", "when_needed"] = Field(
        default="initial",
        description="When to snapshot. initial: snapshot the tables on the first start, then "
        "stream; never: "
        "stream from the binlog's current end; when_needed: as initial, and snapshot again by "
        "itself when the checkpointed binlog position was purged.",
    )
    mode: Literal["envelope", "flat"] = Field(
        default="envelope",
        description="Record value. envelope: {op: c|u|d|r, before, after, source}; flat: "
        "the newest row, a "
        "delete is a tombstone (for sinks with write: delete-on-tombstone and compacted topics).",
    )
    chunk_size: Annotated[int, Field(gt=0)] = Field(
        default=10_000, description="Snapshot rows read per query (and per checkpoint)."
    )
    batch_size: Annotated[int, Field(gt=0)] = Field(
        default=10_000, description="Changes per batch while streaming (whole transactions)."
    )
    linger: PositiveDuration = Field(
        default=0.05,
        description="Longest a streamed change waits in the source for its batch to fill, and "
        "the binlog server's heartbeat period (a pass ends once caught up this long).",
    )
    server_id: int = Field(
        default=0,
        description="Replica server id the reader registers with; unique among the server's "
        "replicas (0: derived from the source name, 5400-6399).",
    )
    poll_interval: PositiveDuration = Field(
        default=0.2, description="Pause between binlog reads once caught up."
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """Always JSON in phase 1."""
        return "json"

    @model_validator(mode="after")
    def _check(self) -> MySQLCDCSource:
        from producers.mysql_cdc_catalog import connection_settings

        found: list[tuple[ProblemKey, str]] = []
        try:
            connection_settings(self.url)
        except ValueError as exc:
            found.append(("url", str(exc).replace(self.url, redact_text(self.url))))
        if self.schema_:
            found.append(("schema", "not supported by mysql_cdc yet (JSON output only); remove it"))
        if self.timestamp_field:
            found.append(
                ("timestamp_field", "mysql_cdc times records by the binlog event; remove it")
            )
        if found:
            raise problems(found)
        return self


def build(pipeline: Pipeline, name: str, cfg: MySQLCDCSource) -> tuple[Any, Any]:
    """(``CDCSource``, a plain JSON ``RecordEncoder``: the source encodes its own records)."""
    from producers.encoder import RecordEncoder
    from producers.mysql_cdc_catalog import connection_settings
    from producers.mysql_cdc_source import CDCSource
    from schemas import JsonCodec

    source = CDCSource(
        name,
        connection_settings(cfg.url),
        tables=cfg.tables,
        snapshot=cfg.snapshot,
        flat=cfg.mode == "flat",
        chunk_size=cfg.chunk_size,
        batch_size=cfg.batch_size,
        linger=cfg.linger,
        server_id=cfg.server_id,
        metrics_labels=(pipeline.name, name, "source"),
    )
    return source, RecordEncoder(JsonCodec(), cfg.key)


def probes(name: str, cfg: MySQLCDCSource) -> list[Probe]:
    """The server's binlog settings and grants, then the tables."""
    return [("mysql binlog", redact_text(cfg.url), lambda timeout: _probe(name, cfg, timeout))]


def _probe(name: str, cfg: MySQLCDCSource, timeout: float) -> tuple[bool, str]:
    from headrace.errors import ConfigError
    from producers.mysql_cdc_catalog import (
        connect,
        connection_settings,
        load_tables,
        server_problems,
    )

    settings = connection_settings(cfg.url)
    conn = connect(settings, timeout)
    try:
        found = server_problems(conn)
        if found:
            return (False, "; ".join(found))
        try:
            tables = load_tables(conn, name, settings["database"], cfg.tables)
        except ConfigError as exc:
            return (False, str(exc))
        return (True, f"binlog ready; {len(tables)} table(s): {', '.join(t.name for t in tables)}")
    finally:
        conn.close()


PLUGIN = SourcePlugin(
    type="mysql_cdc",
    config=MySQLCDCSource,
    build=build,
    probes=probes,
    requires=("pymysqlreplication", "pymysql"),
    extra="mysql_cdc",
)
