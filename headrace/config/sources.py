"""Source models: ``type: mysql`` and ``type: s3`` under ``sources:``.

Both produce records to ``topic``, keyed by ``key`` (record fields), with ``timestamp_field`` as the
Kafka message timestamp (event time). The output encoding is ``json`` or ``avro`` (Avro needs
``schema``): ``format`` on a MySQL source, ``encoding`` on an S3 source (where ``format`` is the
file format). ``output_format`` gives it uniformly.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from headrace.config.base import ConfigModel, NonEmptyFieldList, ProblemKey, Topic, problems
from headrace.config.durations import Duration, PositiveDuration
from headrace.config.redact import redact_text

__all__ = ["MySQLMode", "MySQLSource", "S3Format", "S3Source", "Source", "SourceBase"]

MySQLMode = Literal["bulk", "incrementing", "timestamp", "timestamp+incrementing"]
S3Format = Literal["json", "jsonl", "csv", "json.gz", "jsonl.gz", "csv.gz"]

_MYSQL_URL_RE = re.compile(r"^(mysql|mariadb)(\+[a-z0-9_]+)?://", re.IGNORECASE)
_MODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "bulk": (),
    "incrementing": ("incrementing_column",),
    "timestamp": ("timestamp_column",),
    "timestamp+incrementing": ("timestamp_column", "incrementing_column"),
}


class SourceBase(ConfigModel):
    """Keys every source has: where records go and how they are keyed and timed."""

    topic: Topic = Field(description="Kafka topic the records are produced to.")
    key: NonEmptyFieldList | None = Field(
        default=None,
        description="Record fields whose values form the Kafka message key (none: null key).",
    )
    timestamp_field: str | None = Field(
        default=None,
        description="Record field used as the Kafka message timestamp (event time); "
        "default: the time the record is produced.",
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="Schema name, read from <schemas.dir>/<schema>.avsc; required for Avro "
        "output, and records are validated against it.",
    )
    exactly_once: bool = Field(
        default=False,
        description="Produce records and the source checkpoint in one Kafka transaction.",
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """The encoding of the produced records."""
        raise NotImplementedError


class MySQLSource(SourceBase):
    """Rows of a MySQL/MariaDB table or query, with Kafka Connect JDBC modes."""

    type: Literal["mysql"] = Field(description="Source type: mysql.")
    url: str = Field(
        description="SQLAlchemy URL, e.g. mysql+pymysql://user:password@host:3306/db "
        "(use ${ENV} or enc:<token> for the password); mysql+mysqldb:// uses the C driver "
        "(headrace[mysql]), about 3x faster."
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
    poll_interval: PositiveDuration = Field(
        default=5.0, description="Pause between polls once caught up."
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


class S3Source(SourceBase):
    """Objects under a bucket prefix (json, jsonl or csv, optionally gzip), polled for changes."""

    type: Literal["s3"] = Field(description="Source type: s3.")
    bucket: str = Field(min_length=1, description="Bucket name.")
    prefix: str = Field(default="", description="Only objects whose key starts with this.")
    glob: str | None = Field(
        default=None, description="Only objects whose key matches this glob, e.g. '*.jsonl.gz'."
    )
    format: S3Format = Field(
        description="File format: json (a document or an array), jsonl, csv (header row); "
        "a .gz suffix means gzip-compressed."
    )
    delimiter: str = Field(default=",", description="CSV field delimiter (one character).")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (default: AWS)."
    )
    region: str | None = Field(default=None, description="AWS region (default: boto3's).")
    aws_access_key_id: str | None = Field(
        default=None, description="Access key id (default: boto3's credential chain)."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key (default: boto3's credential chain)."
    )
    poll_interval: PositiveDuration = Field(
        default=10.0, description="Pause between listings once caught up."
    )
    reingest_on_change: bool = Field(
        default=True,
        description="Ingest an object again when it is rewritten (new ETag). false: read each "
        "key once, moving forward in key order (new keys must sort after the last one read).",
    )
    concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=8, description="Objects read at the same time."
    )
    encoding: Literal["json", "avro"] = Field(
        default="json", description="Encoding of the produced records: json or avro."
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """The encoding of the produced records (the ``encoding`` key)."""
        return self.encoding

    @property
    def file_format(self) -> Literal["json", "jsonl", "csv"]:
        """The file format without compression."""
        base = self.format.removesuffix(".gz")
        assert base in ("json", "jsonl", "csv")
        return base  # type: ignore[return-value]

    @property
    def gzip(self) -> bool:
        """True when objects are gzip-compressed (a ``.gz`` format)."""
        return self.format.endswith(".gz")

    @model_validator(mode="after")
    def _check(self) -> S3Source:
        found: list[tuple[ProblemKey, str]] = []
        if "/" in self.bucket:
            found.append(("bucket", "a bucket name has no '/'; put the path in prefix"))
        if "delimiter" in self.model_fields_set and self.file_format != "csv":
            found.append(("delimiter", f"only used with format csv, not {self.format!r}"))
        if len(self.delimiter) != 1:
            found.append(("delimiter", f"{self.delimiter!r} must be exactly one character"))
        if self.encoding == "avro" and not self.schema_:
            found.append(("schema", "required when encoding is 'avro'"))
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            found.append((None, "set both aws_access_key_id and aws_secret_access_key, or neither"))
        if found:
            raise problems(found)
        return self


Source = Annotated[MySQLSource | S3Source, Field(discriminator="type")]
"""A source, chosen by its ``type`` key."""
