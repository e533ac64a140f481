"""Streaming parsers for S3 object bodies: ``jsonl``, ``csv`` and ``json``, optionally gzip.

Each parser reads a binary stream and yields chunks (lists) of ``(n, Record | Poison)``,
where ``n`` is the 1-based position inside the object: the line for jsonl, the data row
(header excluded) for csv, the array element for json. Items with ``n <= skip`` are not
yielded (resume inside an object). jsonl and csv stream with bounded memory; json (one
document or an array) is read whole, so very large files belong in jsonl.

Poison: a jsonl line that is not a JSON object, a csv row whose field count differs from the
header's, an array element that is not an object; blank jsonl lines are skipped. Content that
cannot be read at all (not gzip, truncated gzip, not UTF-8 CSV, broken CSV quoting) ends the
object with one poison item after the last good one: the source moves on.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from typing import IO, Any

import orjson

from producers.batch import Poison
from schemas import Record

__all__ = ["Item", "parse", "read_lines"]

Item = tuple[int, Record | Poison]
CHUNK = 2000
READ_SIZE = 1 << 20


def _pos(key: str, etag: str, n: int) -> dict[str, Any]:
    return {"key": key, "etag": etag, "line": n}


def read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of ``stream`` without their ``\\n`` (and ``\\r``), read in 1 MiB blocks."""
    rest = b""
    while True:
        block = stream.read(READ_SIZE)
        if not block:
            break
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def parse(
    stream: IO[bytes],
    fmt: str,
    *,
    key: str,
    etag: str,
    gzipped: bool,
    skip: int = 0,
    delimiter: str = ",",
) -> Iterator[list[Item]]:
    """Chunks of parsed items of one object (see the module docstring)."""
    body: IO[bytes] = gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[assignment]
    if fmt == "jsonl":
        return _guarded(_jsonl(body, key, etag, skip), key, etag)
    if fmt == "csv":
        return _guarded(_csv(body, key, etag, skip, delimiter), key, etag)
    if fmt == "json":
        return _guarded(_json(body, key, etag, skip), key, etag)
    raise ValueError(f"unknown file format {fmt!r} (expected json, jsonl or csv)")


#: The object's bytes themselves are bad (not gzip, truncated, not UTF-8, broken CSV quoting).
_BAD_CONTENT = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError, csv.Error)


def _guarded(chunks: Iterator[list[Item]], key: str, etag: str) -> Iterator[list[Item]]:
    """Pass ``chunks`` on; unreadable content ends the object with one poison item (after
    the last good position) instead of stopping the source."""
    last = 0
    try:
        for chunk in chunks:
            last = chunk[-1][0]
            yield chunk
    except _BAD_CONTENT as exc:
        n = last + 1
        message = f"object unreadable after item {last}: {type(exc).__name__}: {exc}"
        yield [(n, Poison(b"", type(exc).__name__, message[:500], _pos(key, etag, n)))]


def _jsonl(body: IO[bytes], key: str, etag: str, skip: int) -> Iterator[list[Item]]:
    loads = orjson.loads
    chunk: list[Item] = []
    n = 0
    for line in read_lines(body):
        n += 1
        if n <= skip:
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            continue
        try:
            value = loads(line)
        except orjson.JSONDecodeError as exc:
            chunk.append(
                (
                    n,
                    Poison(
                        line,
                        "JSONDecodeError",
                        f"line {n}: not valid JSON: {exc}",
                        _pos(key, etag, n),
                    ),
                )
            )
        else:
            if type(value) is dict:
                pos = {"key": key, "etag": etag, "line": n}
                chunk.append((n, Record(value, None, None, [], pos, line)))
            else:
                chunk.append(
                    (
                        n,
                        Poison(
                            line,
                            "PoisonRecord",
                            f"line {n}: expected a JSON object, got {type(value).__name__}",
                            _pos(key, etag, n),
                        ),
                    )
                )
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv(body: IO[bytes], key: str, etag: str, skip: int, delimiter: str) -> Iterator[list[Item]]:
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    width = len(header)
    chunk: list[Item] = []
    n = 0
    for row in reader:
        if not row:
            continue  # a blank line
        n += 1
        if n <= skip:
            continue
        if len(row) != width:
            raw = delimiter.join(row).encode()
            chunk.append(
                (
                    n,
                    Poison(
                        raw,
                        "PoisonRecord",
                        f"row {n}: {len(row)} fields, the header has {width}",
                        _pos(key, etag, n),
                    ),
                )
            )
        else:
            chunk.append(
                (n, Record(dict(zip(header, row, strict=True)), position=_pos(key, etag, n)))
            )
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _json(body: IO[bytes], key: str, etag: str, skip: int) -> Iterator[list[Item]]:
    data = body.read()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if skip < 1:
            yield [
                (
                    1,
                    Poison(
                        data[:1000], "JSONDecodeError", f"not valid JSON: {exc}", _pos(key, etag, 1)
                    ),
                )
            ]
        return
    docs = doc if isinstance(doc, list) else [doc]
    chunk: list[Item] = []
    for n, value in enumerate(docs, 1):
        if n <= skip:
            continue
        if isinstance(value, dict):
            chunk.append((n, Record(value, position=_pos(key, etag, n))))
        else:
            chunk.append(
                (
                    n,
                    Poison(
                        orjson.dumps(value),
                        "PoisonRecord",
                        f"element {n}: expected a JSON object, got {type(value).__name__}",
                        _pos(key, etag, n),
                    ),
                )
            )
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
