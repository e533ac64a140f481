"""Sink models: ``type: mongodb`` and ``type: dynamodb`` under ``sinks:``.

Every sink reads one topic (``from``) and writes in batches bounded by ``batch_size`` records,
``batch_bytes`` and ``linger`` (the longest a record waits for its batch to fill).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PlainValidator, SecretStr, model_validator

from headrace.config.base import (
    ConfigModel,
    NonEmptyFieldList,
    ProblemKey,
    Topic,
    TypeLabel,
    problem,
    problems,
)
from headrace.config.durations import ByteSize, Duration, PositiveDuration
from headrace.config.redact import redact_text

__all__ = [
    "DynamoDBSink",
    "MongoIndex",
    "MongoSink",
    "MongoWrite",
    "Sink",
    "SinkBase",
    "SinkRateLimit",
    "WriteConcern",
]

MongoWrite = Literal["insert", "upsert", "replace", "delete-on-tombstone"]
_MONGO_URI_RE = re.compile(r"^mongodb(\+srv)?://", re.IGNORECASE)
_INDEX_KEY_RE = re.compile(r"^\s*(\S+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


class SinkBase(ConfigModel):
    """Keys every sink has: the topic it reads and how it batches."""

    from_: Topic = Field(alias="from", description="Topic the sink reads.")
    batch_size: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="Most records written per batch."
    )
    batch_bytes: ByteSize = Field(
        default=4_000_000,
        description="Most bytes (keys and values) written per batch (e.g. 4MB); a larger "
        "record is written alone.",
    )
    linger: Duration = Field(
        default=0.1, description="Longest a record waits for its batch to fill (e.g. 100ms)."
    )

    @model_validator(mode="after")
    def _check_batch(self) -> SinkBase:
        if self.batch_bytes < 1:
            raise problem("must be at least 1 byte", "batch_bytes")
        return self


def _index_shorthand(value: object) -> object:
    if isinstance(value, str):
        return {"keys": [value]}
    if isinstance(value, list):
        return {"keys": value}
    return value


class MongoIndex(ConfigModel):
    """An index the sink creates (if missing) at start."""

    keys: list[str] = Field(
        min_length=1, description="Index keys, each 'field', 'field asc' or 'field desc'."
    )
    unique: bool = Field(default=False, description="Unique index.")
    name: str | None = Field(default=None, description="Index name (default: MongoDB's).")

    @model_validator(mode="after")
    def _check(self) -> MongoIndex:
        bad = [k for k in self.keys if not _INDEX_KEY_RE.match(k)]
        if bad:
            raise problem(f"{bad[0]!r} is not 'field', 'field asc' or 'field desc'", "keys")
        return self

    def key_spec(self) -> list[tuple[str, int]]:
        """The keys as pymongo wants them: ``[(field, 1 | -1), ...]``."""
        spec: list[tuple[str, int]] = []
        for item in self.keys:
            match = _INDEX_KEY_RE.match(item)
            assert match is not None
            spec.append((match.group(1), -1 if (match.group(2) or "").lower() == "desc" else 1))
        return spec


def _write_ack(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, str) and value.strip():
        return value
    raise problem(f"{value!r} is not a number of members or 'majority'")


class WriteConcern(ConfigModel):
    """MongoDB write concern."""

    w: Annotated[int | str, PlainValidator(_write_ack), TypeLabel("integer or 'majority'")] = Field(
        default="majority", description="Acknowledgement: a number of members or 'majority'."
    )
    j: bool = Field(default=True, description="Wait for the journal.")
    wtimeout: Duration | None = Field(
        default=None,
        description="Give up waiting for acknowledgement after this long (at least 1ms; "
        "omit it to wait without a limit).",
    )

    @model_validator(mode="after")
    def _check_wtimeout(self) -> WriteConcern:
        # MongoDB counts whole milliseconds and reads 0 as "no limit": refuse what rounds to it
        if self.wtimeout is not None and self.wtimeout < 0.001:
            raise problem(
                f"{self.wtimeout:g}s is under 1ms, which MongoDB would read as no limit; "
                "give at least 1ms, or omit wtimeout to wait without one",
                "wtimeout",
            )
        return self


class MongoSink(SinkBase):
    """Writes records to a MongoDB (or FerretDB) collection, idempotently."""

    type: Literal["mongodb"] = Field(description="Sink type: mongodb.")
    uri: str = Field(
        description="MongoDB URI, e.g. mongodb://user:password@host:27017 "
        "(use ${ENV} or enc:<token> for the password)."
    )
    database: str = Field(min_length=1, description="Database name.")
    collection: str = Field(min_length=1, description="Collection name.")
    id: NonEmptyFieldList | None = Field(
        default=None, description="Fields forming _id (several: a compound _id); default: the key."
    )
    write: MongoWrite = Field(
        default="upsert",
        description="Write mode: insert, upsert, replace, or delete-on-tombstone (upsert, and "
        "a tombstone deletes).",
    )
    version_field: str | None = Field(
        default=None, description="Field compared so an older version never overwrites a newer."
    )
    indexes: list[Annotated[MongoIndex, BeforeValidator(_index_shorthand)]] = Field(
        default_factory=list, description="Indexes created at start if missing."
    )
    write_concern: WriteConcern | None = Field(
        default=None, description="Write concern (default: the server's)."
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Bulk write requests (of up to 500 operations) in flight at once; more "
        "helps a server with many cores (FerretDB on SQLite writes one at a time).",
    )

    @model_validator(mode="after")
    def _check(self) -> MongoSink:
        if not _MONGO_URI_RE.match(self.uri):
            raise problem(
                f"{redact_text(self.uri)!r} is not a MongoDB URI (mongodb://host:27017)", "uri"
            )
        return self


class SinkRateLimit(ConfigModel):
    """Write rate cap: ``rate`` items per ``per``."""

    rate: float = Field(gt=0, description="Items written per 'per' period at most.")
    per: PositiveDuration = Field(default=1.0, description="The period of 'rate'.")

    @property
    def per_second(self) -> float:
        """The rate in items per second."""
        return self.rate / self.per


class DynamoDBSink(SinkBase):
    """Writes records to a DynamoDB table, idempotently."""

    type: Literal["dynamodb"] = Field(description="Sink type: dynamodb.")
    table: str = Field(min_length=3, max_length=255, description="Table name.")
    partition_key: str = Field(min_length=1, description="Record field used as partition key.")
    sort_key: str | None = Field(default=None, description="Record field used as sort key.")
    endpoint_url: str | None = Field(
        default=None, description="DynamoDB-compatible endpoint (default: AWS)."
    )
    region: str | None = Field(default=None, description="AWS region (default: boto3's).")
    aws_access_key_id: str | None = Field(
        default=None, description="Access key id (default: boto3's credential chain)."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key (default: boto3's credential chain)."
    )
    version_field: str | None = Field(
        default=None, description="Field compared so an older version never overwrites a newer."
    )
    create: bool = Field(
        default=False, description="Create the table (on-demand billing) if it does not exist."
    )
    rate_limit: SinkRateLimit | None = Field(
        default=None,
        description="Keep writes under the table's capacity; it holds per sink process, so "
        "N copies of the sink write up to N times it.",
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Write requests in flight at once (BatchWriteItem chunks, or conditional "
        "PutItems with version_field).",
    )

    @model_validator(mode="after")
    def _check(self) -> DynamoDBSink:
        found: list[tuple[ProblemKey, str]] = []
        if self.sort_key is not None and self.sort_key == self.partition_key:
            found.append(("sort_key", "must differ from partition_key"))
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            found.append((None, "set both aws_access_key_id and aws_secret_access_key, or neither"))
        if found:
            raise problems(found)
        return self


Sink = Annotated[MongoSink | DynamoDBSink, Field(discriminator="type")]
"""A sink, chosen by its ``type`` key."""
