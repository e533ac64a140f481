"""The MongoDB sink connector (``type: mongodb``): its config, how to build it, its probe.

``connectors.mongodb_writer`` writes the batches (idempotent bulk writes, version guard);
this module declares the keys, builds the writer on ``headrace.clients.mongo_client`` and
probes the server. Needs pymongo (``headrace[mongodb]``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainValidator, model_validator

from connectors.mongodb_writer import MongoWriter
from headrace.config.base import ConfigModel, NonEmptyFieldList, TypeLabel, problem
from headrace.config.durations import Duration
from headrace.config.redact import redact_text
from headrace.config.sinks import SinkBase
from headrace.plugins import Probe, SinkPlugin

__all__ = ["PLUGIN", "MongoIndex", "MongoSink", "MongoWrite", "WriteConcern", "mongo_collection"]

MongoWrite = Literal["insert", "upsert", "replace", "delete-on-tombstone"]
_MONGO_URI_RE = re.compile(r"^mongodb(\+srv)?://", re.IGNORECASE)
_INDEX_KEY_RE = re.compile(r"^\s*(\S+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


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

    def id_fields(self) -> tuple[str, ...]:
        return tuple(self.id or ())

    def applies_tombstones(self) -> bool:
        return self.write == "delete-on-tombstone"

    def keeps_first_write(self) -> bool:
        return self.write == "insert"


def mongo_collection(config: MongoSink, timeout_ms: int = 10_000) -> tuple[Any, Any]:
    """(client, collection) for ``config``, with its write concern. Caller closes the client.
    Decimals are stored as exact text (``headrace.clients.mongo_client``)."""
    from pymongo.write_concern import WriteConcern as PyWriteConcern

    from headrace.clients import mongo_client

    client = mongo_client(config.uri, timeout=timeout_ms / 1000)
    coll = client[config.database][config.collection]
    wc = config.write_concern
    if wc is not None:
        wtimeout = int(wc.wtimeout * 1000) if wc.wtimeout is not None else None
        coll = coll.with_options(write_concern=PyWriteConcern(w=wc.w, j=wc.j, wtimeout=wtimeout))
    return client, coll


def build(name: str, config: MongoSink, context: Any) -> Any:
    """The ``MongoWriter`` of sink ``name``; its client closes with ``context.closers``."""
    client, collection = mongo_collection(config)
    context.closers.append(client.close)
    return MongoWriter(name, config, collection, key_fields=context.key_fields)


def probes(name: str, config: MongoSink) -> list[Probe]:
    """The server answers a ping; whether the collection exists yet."""

    def run(timeout: float) -> tuple[bool, str]:
        from headrace.clients import mongo_client

        client = mongo_client(config.uri, timeout=timeout)
        try:
            client.admin.command("ping")
            exists = config.collection in client[config.database].list_collection_names()
            if exists:
                return (True, "collection exists")
            return (True, "server answers; collection is created on first write")
        finally:
            client.close()

    return [("mongodb collection", f"{config.database}.{config.collection}", run)]


PLUGIN = SinkPlugin(
    type="mongodb",
    config=MongoSink,
    build=build,
    probes=probes,
    requires=("pymongo",),
    extra="mongodb",
)
