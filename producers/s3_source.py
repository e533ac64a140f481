"""``type: s3``: objects under a bucket prefix into records, in key order, resumable.

Listing is paginated (ListObjectsV2, key order). Up to ``concurrency`` objects are read at once
by worker threads, each parsing into a bounded queue, while records are handed on in listing
order and, inside an object, in line order. Memory stays bounded: a large object is streamed.
Many small objects are read concurrently too, so the rate is bounded by the endpoint's GETs.

State (the checkpoint) is an ``S3State``: a high-water key for the current sweep over the
bucket, the sweep times and a small set of ETag digests (see ``producers.s3_state``), so its
size does not grow with the number of objects. An object already read is skipped; with
``reingest_on_change`` one rewritten since (new ETag) is read again from its first line.
``current`` resumes inside a partly sent object.

With an ``encoder`` (the runner's), each reader thread also encodes its records (keys, value
bytes, event times) and moves the ones that cannot be encoded to the chunk's poison, so the
runner's thread only produces: measured on a 1.3 M-line object, the runner's thread held the
GIL ~70% of the time and a quarter of that was event-time parsing, while the reader waited
on its full queue more than half of the time.
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from headrace.errors import HeadraceError
from producers.batch import Batch, ObjectRows, Poison
from producers.encoder import RecordEncoder
from producers.projection import Projection
from producers.s3_formats import Chunk, parse
from producers.s3_state import S3State

__all__ = ["S3AccessError", "S3ObjectSource"]

log = logging.getLogger(__name__)

_END = object()
BATCH_RECORDS = 5000
#: Parsed chunks (of up to 2,000 records; 8,000 lines from the native reader) each reader may
#: hold ahead of the runner: enough that the runner seldom waits for the object it is handing
#: on (measured: with 4, it waited ~10% of a 1.3 M-line object's time; with 8, ~3%), at most
#: ~7 MB per object being read (~20 MB of 150-byte lines from the native reader).
QUEUE_CHUNKS = 8
#: Most listed objects held ahead of the one being handed on (skipped ones included).
WINDOW = 1000


class S3AccessError(HeadraceError):
    """The bucket is missing or not readable with these credentials at this endpoint."""


class S3ObjectSource:
    """One S3 source (see the module docstring). ``client`` is a boto3 S3 client;
    ``projection`` (jsonl): records carry only these fields, their lines are sent as read;
    ``encoder``: readers encode the records with (a copy of) it."""

    unit = "objects"

    def __init__(
        self,
        name: str,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        glob: str | None = None,
        file_format: str,
        gzipped: bool = False,
        delimiter: str = ",",
        concurrency: int = 8,
        reingest_on_change: bool = True,
        endpoint: str | None = None,
        batch_records: int = BATCH_RECORDS,
        projection: Projection | None = None,
        encoder: RecordEncoder | None = None,
    ) -> None:
        self.name = name
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.glob = glob
        self.file_format = file_format
        self.gzipped = gzipped
        self.delimiter = delimiter
        self.concurrency = concurrency
        self.reingest_on_change = reingest_on_change
        self.endpoint = endpoint or "AWS S3"
        self.batch_records = batch_records
        if projection is not None and projection.native and encoder is None:
            # natively read chunks carry only their message parts: every chunk must be encoded
            raise ValueError("a native projection needs the runner's encoder")
        self.projection = projection
        self.encoder = encoder
        self.position = S3State(reingest_on_change)

    # -- lifecycle ------------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        """Resume from a checkpoint state (None: every object is new)."""
        self.position = S3State.from_state(state, reingest=self.reingest_on_change)

    def close(self) -> None:
        """Nothing held between passes."""

    def state(self, line: int | None = None, key: str = "", etag: str = "") -> dict[str, Any]:
        """A checkpoint state: the position and, if given, the current object's line."""
        out = self.position.to_state()
        out["current"] = None if line is None else {"key": key, "etag": etag, "line": line}
        return out

    # -- listing --------------------------------------------------------------------------

    def _error(self, exc: Exception) -> S3AccessError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        fix = {
            "NoSuchBucket": "create the bucket or fix `bucket`",
            "AccessDenied": "grant s3:ListBucket and s3:GetObject to these credentials",
        }.get(code, "check endpoint_url, the credentials and the network")
        return S3AccessError(
            f"source {self.name!r}: cannot read bucket {self.bucket!r} at {self.endpoint}: "
            f"{code}: {exc}; {fix}"
        )

    def list_objects(
        self, after: str | None = None, on_first_page: Any = None
    ) -> Iterator[tuple[str, str, datetime | None]]:
        """(key, etag, last modified) of every matching object after key ``after``, in key
        order, across all pages; ``on_first_page(server_time)`` is called before the first
        object with the endpoint's clock (the response's Date header, else ours)."""
        paginator = self.client.get_paginator("list_objects_v2")
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if after is not None:
            args["StartAfter"] = after
        first = True
        try:
            for page in paginator.paginate(**args):
                if first and on_first_page is not None:
                    on_first_page(_server_time(page))
                first = False
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or not self._matches(key):
                        continue
                    yield key, obj["ETag"].strip('"'), obj.get("LastModified")
            if first and on_first_page is not None:
                on_first_page(datetime.now(UTC))  # no page at all (a fake client)
        except Exception as exc:
            if isinstance(exc, HeadraceError):
                raise
            raise self._error(exc) from None

    def _matches(self, key: str) -> bool:
        if self.glob is None:
            return True
        rel = key[len(self.prefix) :]
        name = key.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(k, self.glob) for k in (key, rel, name))

    def todo(
        self, listing: Iterator[tuple[str, str, datetime | None]]
    ) -> Iterator[tuple[str, str, datetime | None, int]]:
        """(key, etag, last modified, lines to skip) of each listed object in listing order;
        skip is -1 for an object not to read now (already read, or for the next sweep)."""
        pos = self.position
        cur = pos.current
        for key, etag, modified in listing:
            if not pos.wanted(key, etag, modified):
                yield key, etag, modified, -1
                continue
            skip = 0
            if cur is not None and cur.get("key") == key and cur.get("etag") == etag:
                skip = int(cur.get("line") or 0)
            yield key, etag, modified, skip

    # -- reading --------------------------------------------------------------------------

    def _read(
        self, key: str, etag: str, skip: int, out: queue.Queue[Any], cancel: threading.Event
    ) -> None:
        """Worker thread: parse (and encode) one object into ``out``; ends with _END or an
        exception."""
        encoder = self.encoder.fork() if self.encoder is not None else None
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
            body = resp["Body"]

            def reopen(offset: int) -> Any:
                """The object's bytes from ``offset`` (a damaged gzip member is read again)."""
                return self.client.get_object(
                    Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"', Range=f"bytes={offset}-"
                )["Body"]

            try:
                for chunk in parse(
                    body,
                    self.file_format,
                    key=key,
                    etag=etag,
                    gzipped=self.gzipped,
                    skip=skip,
                    delimiter=self.delimiter,
                    projection=self.projection,
                    reopen=reopen,
                ):
                    if encoder is not None and chunk.encoded is None:
                        _encode(encoder, chunk, key, etag)
                    while not cancel.is_set():
                        try:
                            out.put(chunk, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if cancel.is_set():
                        return
            finally:
                body.close()
            out.put(_END)
        except Exception as exc:
            out.put(exc)

    def batches(self) -> Generator[Batch, None, None]:
        """One pass: the rest of the current sweep (every new or changed object), as batches
        of up to ``batch_records``; the last batch's state completes the sweep."""
        pos = self.position
        listing = self.todo(self.list_objects(pos.resume(), pos.begin))
        cancel = threading.Event()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"s3-{self.name}")
        # objects in listing order: (key, etag, modified, queue or None for a skipped one)
        window: list[tuple[str, str, datetime | None, queue.Queue[Any] | None]] = []
        rows = ObjectRows()
        units = 0
        reading = 0

        def fill() -> None:
            nonlocal reading
            while reading < self.concurrency and len(window) < WINDOW:
                nxt = next(listing, None)
                if nxt is None:
                    return
                key, etag, modified, skip = nxt
                if skip < 0:
                    window.append((key, etag, modified, None))
                    continue
                q: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
                pool.submit(self._read, key, etag, skip, q, cancel)
                window.append((key, etag, modified, q))
                reading += 1

        try:
            fill()
            while window:
                key, etag, modified, q = window.pop(0)
                if q is None:
                    pos.passed(key)  # already read, or left to the next sweep
                    fill()
                    continue
                reading -= 1
                complete = True
                while True:
                    chunk = q.get()
                    if chunk is _END:
                        break
                    if isinstance(chunk, Exception):
                        complete = self._object_failed(key, chunk)
                        break
                    c: Chunk = chunk
                    rows.add(key, etag, c.values, c.raws, c.lines, c.poison, c.encoded)
                    if len(rows) >= self.batch_records:
                        records, poison = rows.take()
                        yield Batch(records, self.state(c.last, key, etag), poison, units)
                        units = 0
                if complete:
                    pos.read(key, etag, modified)
                    units += 1
                else:
                    pos.passed(key)  # changed or vanished: the next sweep sees its new version
                fill()
                if len(rows) >= self.batch_records:
                    records, poison = rows.take()
                    yield Batch(records, self.state(), poison, units)
                    units = 0
            pos.complete()
            records, poison = rows.take()
            yield Batch(records, self.state(), poison, units)
        finally:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _object_failed(self, key: str, exc: Exception) -> bool:
        """An object could not be read to its end: False (not done) if it changed or vanished
        meanwhile (the next pass sees its new version); raise for anything else."""
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "NoSuchKey", "412", "404"):
            log.warning(
                "source %r: object %r changed or vanished while being read (%s); "
                "the next pass reads its current version",
                self.name,
                key,
                code,
            )
            return False
        if code is not None:
            raise self._error(exc)
        raise S3AccessError(f"source {self.name!r}: reading object {key!r} failed: {exc}")


def _encode(encoder: RecordEncoder, chunk: Chunk, key: str, etag: str) -> None:
    """Encode ``chunk``'s records into ``chunk.encoded``; a record that cannot be encoded (a
    key field missing, a bad event time, a schema mismatch) leaves the columns for the
    chunk's poison, with its key when one can be made."""
    enc = encoder.encode_many(chunk.values, chunk.raws)
    if enc.poison:
        bad = enc.poison
        raws = chunk.raws
        for i, exc in bad.items():
            dead_key, dead_value = encoder.best_effort(chunk.values[i], raws[i] if raws else None)
            position = {"key": key, "etag": etag, "line": chunk.lines[i]}
            chunk.poison.append(
                Poison(dead_value or b"", type(exc).__name__, str(exc), position, dead_key)
            )
        enc, keep = enc.good()
        chunk.values = [chunk.values[i] for i in keep]
        chunk.lines = [chunk.lines[i] for i in keep]
        if raws is not None:
            chunk.raws = [raws[i] for i in keep]
    chunk.encoded = enc


def _server_time(page: dict[str, Any]) -> datetime:
    """The endpoint's clock from a listing response's Date header (our clock without one)."""
    date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        try:
            return parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)
