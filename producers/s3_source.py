"""``type: s3``: objects under a bucket prefix into records, in key order, resumable.

Listing is paginated (ListObjectsV2). Up to ``concurrency`` objects are read at once by worker
threads, each parsing into a bounded queue, while records are handed on in listing order and,
inside an object, in line order. Memory stays bounded: a large object is streamed.

State (the checkpoint): ``{"done": {key: etag}, "current": {"key", "etag", "line"} | None}``.
An object whose key is done with the same ETag is skipped; with ``reingest_on_change`` one with
a new ETag is read again from its first line. ``current`` resumes inside a partly sent object.
"""

from __future__ import annotations

import fnmatch
import logging
import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from headrace.errors import HeadraceError
from producers.batch import Batch, Poison
from producers.s3_formats import Item, parse
from schemas import Record

__all__ = ["S3AccessError", "S3ObjectSource"]

log = logging.getLogger(__name__)

_END = object()
BATCH_RECORDS = 5000
QUEUE_CHUNKS = 4


class S3AccessError(HeadraceError):
    """The bucket is missing or not readable with these credentials at this endpoint."""


class S3ObjectSource:
    """One S3 source (see the module docstring). ``client`` is a boto3 S3 client."""

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
        self.done: dict[str, str] = {}
        self.current: dict[str, Any] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        """Resume from a checkpoint state (None: every object is new)."""
        self.done = dict((state or {}).get("done") or {})
        self.current = (state or {}).get("current")

    def close(self) -> None:
        """Nothing held between passes."""

    def state(self, line: int | None = None, key: str = "", etag: str = "") -> dict[str, Any]:
        """A checkpoint state: the done objects and, if given, the current object's line."""
        current = None if line is None else {"key": key, "etag": etag, "line": line}
        return {"done": dict(self.done), "current": current}

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

    def list_objects(self) -> Iterator[tuple[str, str]]:
        """(key, etag) of every matching object, in key order, across all pages."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or not self._matches(key):
                        continue
                    yield key, obj["ETag"].strip('"')
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

    def todo(self, listing: Iterator[tuple[str, str]]) -> Iterator[tuple[str, str, int]]:
        """(key, etag, lines to skip) of the objects to read now, in listing order."""
        cur = self.current
        for key, etag in listing:
            seen = self.done.get(key)
            if seen == etag or (seen is not None and not self.reingest_on_change):
                continue
            skip = 0
            if cur is not None and cur.get("key") == key and cur.get("etag") == etag:
                skip = int(cur.get("line") or 0)
            yield key, etag, skip

    # -- reading --------------------------------------------------------------------------

    def _read(
        self, key: str, etag: str, skip: int, out: queue.Queue[Any], cancel: threading.Event
    ) -> None:
        """Worker thread: parse one object into ``out``; ends with _END or an exception."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{etag}"')
            body = resp["Body"]
            try:
                for chunk in parse(
                    body,
                    self.file_format,
                    key=key,
                    etag=etag,
                    gzipped=self.gzipped,
                    skip=skip,
                    delimiter=self.delimiter,
                ):
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
        """One pass: every new or changed object, as batches of up to ``batch_records``."""
        listing = self.todo(self.list_objects())
        cancel = threading.Event()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"s3-{self.name}")
        window: list[tuple[str, str, queue.Queue[Any]]] = []
        records: list[Record] = []
        poison: list[Poison] = []
        units = 0

        def fill() -> None:
            while len(window) < self.concurrency:
                nxt = next(listing, None)
                if nxt is None:
                    return
                key, etag, skip = nxt
                q: queue.Queue[Any] = queue.Queue(QUEUE_CHUNKS)
                pool.submit(self._read, key, etag, skip, q, cancel)
                window.append((key, etag, q))

        try:
            fill()
            while window:
                key, etag, q = window[0]
                last = 0
                complete = True
                while True:
                    chunk = q.get()
                    if chunk is _END:
                        break
                    if isinstance(chunk, Exception):
                        complete = self._object_failed(key, chunk)
                        break
                    items: list[Item] = chunk
                    for _n, item in items:
                        if type(item) is Record:
                            records.append(item)
                        else:
                            poison.append(item)  # type: ignore[arg-type]
                    last = items[-1][0]
                    if len(records) + len(poison) >= self.batch_records:
                        yield Batch(records, self.state(last, key, etag), poison, units)
                        records, poison, units = [], [], 0
                window.pop(0)
                if complete:
                    self.done[key] = etag
                    units += 1
                self.current = None
                fill()
                if len(records) + len(poison) >= self.batch_records:
                    yield Batch(records, self.state(), poison, units)
                    records, poison, units = [], [], 0
            if records or poison or units:
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
