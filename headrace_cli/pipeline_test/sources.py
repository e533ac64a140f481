"""A source's parsing, fed inline: what it would produce, records and dead letters.

The real code runs: ``producers.runner.Runner`` (encoding, keys, event times, dead letters
with their positions) over the real source class for S3 (``producers.s3_source.
S3ObjectSource``: listing order, prefix and glob, json/jsonl/csv parsing, gzip, poison),
built as ``producers.s3.build`` builds it but on an in-memory bucket; for MySQL the rows a
test gives stand for what the source's SELECT returns (in the order it reads them:
``incrementing`` by the incrementing column, ``timestamp`` modes by the timestamp column
then the incrementing one, ``bulk`` as given), encoded as ``producers.mysql.build``'s
encoder does (naive datetimes are UTC). The runner produces into a capturing producer; what
it captured is handed back as messages, for the simulation to land in the source's topic
and ``<topic>.dlq``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

from headrace.config import Pipeline
from producers.batch import Batch, Rows
from producers.encoder import RecordEncoder, make_codec
from producers.runner import DeliveryReports, Runner
from schemas import JsonCodec
from streams.stages.base import OutMessage

__all__ = [
    "Capture",
    "InMemoryBucket",
    "RowsSource",
    "default_object_key",
    "mysql_messages",
    "s3_messages",
    "s3_objects",
    "s3_source",
]

_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


class Capture:
    """The part of ``confluent_kafka.Producer`` the source runner uses; keeps what is
    produced, acknowledges everything at once."""

    def __init__(self) -> None:
        self.messages: list[OutMessage] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: Any = None,
        callback: Any = None,
        timestamp: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        where = None if partition is None or partition < 0 else partition
        self.messages.append(
            OutMessage(topic, key, value, timestamp or None, list(headers or []), where)
        )

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def _run(pipeline: Pipeline, name: str, source: Any, encoder: RecordEncoder) -> list[OutMessage]:
    capture = Capture()
    runner = Runner(
        pipeline=pipeline.name,
        source=source,
        topic=pipeline.sources[name].topic,
        encoder=encoder,
        producer=capture,  # type: ignore[arg-type]
        store=None,
        reports=DeliveryReports(),
    )
    runner.source.restore(None)
    runner.run_pass()
    return capture.messages


# -- S3 ---------------------------------------------------------------------------------------


class InMemoryBucket:
    """The part of a boto3 S3 client ``S3ObjectSource`` uses, over ``objects`` (key ->
    body); ETags are MD5s of the bodies, every object was last modified long ago."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = dict(sorted(objects.items()))

    def get_paginator(self, operation: str) -> InMemoryBucket:
        return self

    def paginate(self, **args: Any) -> Iterator[dict[str, Any]]:
        prefix, after = args.get("Prefix", ""), args.get("StartAfter")
        contents = [
            {"Key": key, "ETag": f'"{_etag(body)}"', "LastModified": _LONG_AGO}
            for key, body in self.objects.items()
            if key.startswith(prefix) and (after is None or key > after)
        ]
        yield {"Contents": contents}

    def get_object(self, **args: Any) -> dict[str, Any]:
        body = self.objects[args["Key"]]
        where = args.get("Range")
        if where:
            body = body[int(where.removeprefix("bytes=").rstrip("-")) :]
        return {"Body": io.BytesIO(body)}


def _etag(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def s3_objects(cfg: Any, objects: dict[str, bytes | str]) -> dict[str, bytes]:
    """Object bodies as bytes: text is UTF-8, gzip-compressed for a ``.gz`` format (bytes,
    read from a file, are taken as they are)."""
    out: dict[str, bytes] = {}
    for key, body in objects.items():
        if isinstance(body, str):
            data = body.encode()
            out[key] = gzip.compress(data, mtime=0) if cfg.gzip else data
        else:
            out[key] = body
    return out


def default_object_key(cfg: Any) -> str:
    """The key of a ``body:`` given alone: ``<prefix>test.<format>`` (the glob permitting)."""
    return f"{cfg.prefix}test.{cfg.format}"


def s3_source(
    pipeline: Pipeline, name: str, objects: dict[str, bytes]
) -> tuple[Any, RecordEncoder]:
    """S3 source ``name`` and its encoder as ``producers.s3.build`` builds them, on a bucket
    holding ``objects`` (key -> body) instead of a client."""
    from producers.s3 import source_on

    cfg: Any = pipeline.sources[name]
    source, encoder = source_on(
        pipeline, name, cfg, InMemoryBucket(objects), concurrency=1, endpoint="a test's bucket"
    )
    return source, encoder


def s3_messages(pipeline: Pipeline, name: str, objects: dict[str, bytes]) -> list[OutMessage]:
    """What S3 source ``name`` produces from a bucket holding ``objects`` (key -> body)."""
    source, encoder = s3_source(pipeline, name, objects)
    return _run(pipeline, name, source, encoder)


# -- MySQL ------------------------------------------------------------------------------------


class RowsSource:
    """``producers.mysql_source.MySQLRowSource`` over rows a test gives: one pass, batches of
    ``batch_size``, positions as that source gives them (the row number in ``bulk`` mode,
    else the timestamp and id)."""

    unit = "rows"

    def __init__(self, name: str, cfg: Any, rows: list[dict[str, Any]]) -> None:
        self.name = name
        self.cfg = cfg
        self.rows = _in_read_order(cfg, rows)

    def restore(self, state: dict[str, Any] | None) -> None:
        return None

    def close(self) -> None:
        return None

    def batches(self) -> Generator[Batch, None, None]:
        size = self.cfg.batch_size
        for first in range(0, len(self.rows), size):
            values = [dict(r) for r in self.rows[first : first + size]]
            yield Batch(Rows(values, None, self._where(values, first)), {})
        yield Batch([], {})

    def _where(self, values: list[dict[str, Any]], first: int) -> Any:
        ts_col, inc_col = self.cfg.timestamp_column, self.cfg.incrementing_column
        bulk = self.cfg.mode == "bulk"

        def where(i: int) -> dict[str, Any]:
            if bulk:
                return {"row": first + i + 1}
            pos: dict[str, Any] = {}
            value = values[i]
            if ts_col and value.get(ts_col) is not None:
                pos["ts"] = value[ts_col]
            if inc_col and value.get(inc_col) is not None:
                pos["id"] = value[inc_col]
            return pos

        return where


def _in_read_order(cfg: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` in the order the source's SELECT reads them (see the module doc)."""
    columns = [c for c in (cfg.timestamp_column, cfg.incrementing_column) if c]
    if cfg.mode == "bulk" or not columns:
        return list(rows)
    try:
        return sorted(rows, key=lambda r: [(r.get(c) is not None, r.get(c)) for c in columns])
    except TypeError:  # values of mixed types: leave them as given
        return list(rows)


def mysql_messages(pipeline: Pipeline, name: str, rows: list[dict[str, Any]]) -> list[OutMessage]:
    """What MySQL source ``name`` produces from ``rows`` (see the module doc)."""
    cfg: Any = pipeline.sources[name]
    codec = make_codec(pipeline, cfg)
    if isinstance(codec, JsonCodec):
        codec = codec.as_naive_utc()  # the source's datetimes are UTC, left naive
    encoder = RecordEncoder(codec, cfg.key, cfg.timestamp_field)
    return _run(pipeline, name, RowsSource(name, cfg, rows), encoder)
