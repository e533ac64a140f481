"""Streaming parsers for S3 object bodies: ``jsonl``, ``csv`` and ``json``, optionally gzip.

Each parser reads a binary stream and yields ``Chunk``s: records in columns (values, their
source bytes for jsonl, their positions) and the poison met among them. A position ``n`` is
1-based inside the object: the line for jsonl, the data row (header excluded) for csv, the
array element for json. Items with ``n <= skip`` are not yielded (resume inside an object).
Every format streams with bounded memory: jsonl and csv line by line, a json array element by
element (ijson); a json body that is one document is read whole (it is one record).

Poison: a jsonl line that is not a JSON object, a csv row whose field count differs from the
header's, an array element that is not an object; blank jsonl lines are skipped. Content that
cannot be read at all (not gzip, truncated gzip, not UTF-8 CSV, broken CSV quoting, a json
array broken part-way) ends the object with one poison item after the last good one: the
source moves on.

Gzip is read with ISA-L (the ``isal`` package) when it is installed, else with the standard
library's zlib: the same bytes, about three times faster (the bulk of an S3 JSONL source's
CPU after producing itself). A jsonl ``Projection`` (``producers.projection``) that uses the
native reader gets whole chunks of up to ``NATIVE_CHUNK`` lines, encoded.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import ijson
import orjson

from producers.batch import Poison
from producers.projection import Projection

if TYPE_CHECKING:
    from producers.encoder import Encoded

__all__ = ["GZIP_READER", "Chunk", "line_blocks", "parse", "read_lines"]

CHUNK = 2000
#: Lines per chunk read by the native reader: each call gives up the GIL and must take it back
#: from the producing thread, so fewer, larger calls wait less (measured on a 1.3 M-line
#: object, ratio to raw producing: 2,000 lines 0.51-0.62, 8,000 0.62-0.68, 20,000 0.54-0.61).
NATIVE_CHUNK = 8000
#: ... and at most about this many bytes of lines (memory stays bounded for long lines).
NATIVE_CHUNK_BYTES = 2 << 20
READ_SIZE = 1 << 20


@dataclass(slots=True)
class Chunk:
    """Consecutive items of one object: records in columns (``values``, their source
    ``raws`` or None, their positions ``lines``) and the ``poison`` among them; ``last`` is the
    position of the chunk's last item, record or poison. ``encoded``: the records' Kafka
    message parts once a reader encoded them (see ``S3ObjectSource``), aligned with
    ``values``. A chunk read by a native projection comes encoded, and its ``values`` are
    empty placeholders (only the message parts are sent)."""

    values: list[dict[str, Any]] = field(default_factory=list)
    raws: list[bytes] | None = None
    lines: list[int] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    last: int = 0
    encoded: Encoded | None = None

    def __len__(self) -> int:
        return len(self.values) + len(self.poison)


def _pos(key: str, etag: str, n: int) -> dict[str, Any]:
    return {"key": key, "etag": etag, "line": n}


def line_blocks(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """The lines of ``stream`` without their ``\\n`` (or ``\\r\\n``), one list per 1 MiB
    block read (a line cut by a block's end comes whole at the start of the next list); never
    an empty list."""
    for lines, _ in _sized_line_blocks(stream):
        yield lines


def _sized_line_blocks(stream: IO[bytes]) -> Iterator[tuple[list[bytes], int]]:
    """``line_blocks`` with the bytes each list was split from (line ends included)."""
    rest = b""
    while block := stream.read(READ_SIZE):
        data = rest + block
        lines = data.split(b"\n")
        rest = lines.pop()
        if b"\r" in data:  # CRLF line ends (rare): C code finds them, Python strips them
            lines = [line.removesuffix(b"\r") for line in lines]
        if lines:
            yield lines, len(data) - len(rest)
    if rest:
        yield [rest.removesuffix(b"\r")], len(rest)


def read_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines of ``stream`` without their ``\\n`` (or ``\\r\\n``), read in 1 MiB blocks."""
    for lines in line_blocks(stream):
        yield from lines


def parse(
    stream: IO[bytes],
    fmt: str,
    *,
    key: str,
    etag: str,
    gzipped: bool,
    skip: int = 0,
    delimiter: str = ",",
    projection: Projection | None = None,
) -> Iterator[Chunk]:
    """Chunks of parsed items of one object (see the module docstring); ``projection``
    (jsonl only): values hold only its fields, the raws are the lines."""
    body: IO[bytes] = GZIP_READER(fileobj=stream, mode="rb") if gzipped else stream
    if fmt == "jsonl":
        return _guarded(_jsonl(body, key, etag, skip, projection), key, etag)
    if fmt == "csv":
        return _guarded(_csv(body, key, etag, skip, delimiter), key, etag)
    if fmt == "json":
        return _guarded(_json(body, key, etag, skip), key, etag)
    raise ValueError(f"unknown file format {fmt!r} (expected json, jsonl or csv)")


def _gzip_reader() -> tuple[Any, tuple[type[BaseException], ...]]:
    """(the gzip file class, its own error classes): ISA-L's (the ``isal`` package, about
    three times zlib's speed, GIL released too) when installed, else the standard library's."""
    try:
        igzip = importlib.import_module("isal.igzip")
        igzip_lib = importlib.import_module("isal.igzip_lib")
    except ImportError:
        return gzip.GzipFile, ()
    return igzip.IGzipFile, (igzip_lib.IsalError,)


GZIP_READER, _GZIP_ERRORS = _gzip_reader()

#: The object's bytes themselves are bad (not gzip, truncated, not UTF-8, broken CSV quoting,
#: broken JSON inside a streamed array).
_BAD_CONTENT = (
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    *_GZIP_ERRORS,
    UnicodeDecodeError,
    csv.Error,
    ijson.JSONError,
)


def _guarded(chunks: Iterator[Chunk], key: str, etag: str) -> Iterator[Chunk]:
    """Pass ``chunks`` on; unreadable content ends the object with one poison item (after
    the last good position) instead of stopping the source."""
    last = 0
    try:
        for chunk in chunks:
            last = chunk.last
            yield chunk
    except _BAD_CONTENT as exc:
        n = last + 1
        message = f"object unreadable after item {last}: {type(exc).__name__}: {exc}"
        poison = Poison(b"", type(exc).__name__, message[:500], _pos(key, etag, n))
        yield Chunk(poison=[poison], last=n)


def _jsonl(
    body: IO[bytes], key: str, etag: str, skip: int, projection: Projection | None = None
) -> Iterator[Chunk]:
    # the hot path of the S3 source, CHUNK lines at a time: with a projection one decode per
    # chunk and no Python code per line unless the chunk holds a blank line or poison;
    # positions are the ``lines`` column, no object per record
    chunk = Chunk(raws=[])
    n = 0  # lines met so far, blank ones included: positions are 1-based line numbers
    native = projection is not None and projection.native
    size = NATIVE_CHUNK if native else CHUNK
    # the native reader takes every line as it is, and reads the whole chunk in _native_chunk
    add = _pend_lines if native else _add_lines
    bad: BaseException | None = None
    try:
        for lines, nbytes in _sized_line_blocks(body):
            first = n + 1
            n += len(lines)
            if n <= skip:
                continue
            if first <= skip:
                lines = lines[skip - first + 1 :]
                first = skip + 1
            if native:  # as many lines as fit NATIVE_CHUNK_BYTES, at this block's line length
                size = max(1, min(NATIVE_CHUNK, NATIVE_CHUNK_BYTES * len(lines) // (nbytes or 1)))
            at = 0
            while at < len(lines):  # into chunks of ``size`` items (lines, for the native reader)
                room = size - len(chunk.lines) - len(chunk.poison)
                part = lines if at == 0 and len(lines) <= room else lines[at : at + room]
                add(part, first + at, chunk, key, etag, projection)
                at += len(part)
                if len(chunk.lines) + len(chunk.poison) >= size:
                    chunk.last = first + at - 1
                    yield _native_chunk(chunk, key, etag, projection) if native else chunk
                    chunk = Chunk(raws=[])
    except _BAD_CONTENT as exc:
        bad = exc  # hand on what was read before the content went bad, then fail
    if chunk.lines or chunk.poison:
        chunk.last = n
        yield _native_chunk(chunk, key, etag, projection) if native else chunk
    if bad is not None:
        raise bad


#: The ``values`` of a natively read chunk's records (see ``Chunk``).
_NO_VALUE: dict[str, Any] = {}


def _pend_lines(
    lines: list[bytes], first: int, chunk: Chunk, key: str, etag: str, projection: Projection | None
) -> None:
    """Add consecutive jsonl lines (numbered from ``first``, blank ones too) to ``chunk``
    unread, for ``_native_chunk``; same arguments as ``_add_lines``."""
    chunk.raws.extend(lines)  # type: ignore[union-attr]
    chunk.lines.extend(range(first, first + len(lines)))


def _native_chunk(chunk: Chunk, key: str, etag: str, projection: Projection | None) -> Chunk:
    """``chunk`` (every line of it, blank ones too, numbered consecutively) read by the
    native reader; when it declines, by the Python path (which also finds the poison)."""
    assert projection is not None and chunk.raws is not None
    encoded = projection.encode(chunk.raws)
    if encoded is not None:
        chunk.values = [_NO_VALUE] * len(chunk.raws)
        chunk.encoded = encoded
        return chunk
    out = Chunk(raws=[], last=chunk.last)
    _add_lines(chunk.raws, chunk.lines[0], out, key, etag, projection)
    return out


def _add_lines(
    lines: list[bytes], first: int, chunk: Chunk, key: str, etag: str, projection: Projection | None
) -> None:
    """Add consecutive jsonl lines (numbered from ``first``) to ``chunk``: with a projection
    all at once when every line is a JSON object with the projected fields, else line by line
    (to skip blank lines and find the poison)."""
    values = projection.values(lines) if projection is not None else None
    if values is not None:
        chunk.values.extend(values)
        chunk.raws.extend(lines)  # type: ignore[union-attr]
        chunk.lines.extend(range(first, first + len(lines)))
        return
    for n, line in enumerate(lines, first):
        _classify(line, n, chunk, key, etag, projection)


def _classify(
    line: bytes, n: int, chunk: Chunk, key: str, etag: str, projection: Projection | None
) -> None:
    """Add one jsonl line to ``chunk``: a record (its value, or with a projection only the
    projected fields), a poison item, or nothing for a blank line."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if line.strip():
            message = f"line {n}: not valid JSON: {exc}"
            chunk.poison.append(Poison(line, "JSONDecodeError", message, _pos(key, etag, n)))
        return
    if type(value) is not dict:
        message = f"line {n}: expected a JSON object, got {type(value).__name__}"
        chunk.poison.append(Poison(line, "PoisonRecord", message, _pos(key, etag, n)))
        return
    if projection is not None:
        value = {f: value[f] for f in projection.fields if f in value}
    chunk.values.append(value)
    chunk.raws.append(line)  # type: ignore[union-attr]
    chunk.lines.append(n)


def _csv(body: IO[bytes], key: str, etag: str, skip: int, delimiter: str) -> Iterator[Chunk]:
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    width = len(header)
    chunk = Chunk()
    n = 0
    bad: BaseException | None = None
    try:
        for row in reader:
            if not row:
                continue  # a blank line
            n += 1
            if n <= skip:
                continue
            if len(row) != width:
                raw = delimiter.join(row).encode()
                chunk.poison.append(
                    Poison(
                        raw,
                        "PoisonRecord",
                        f"row {n}: {len(row)} fields, the header has {width}",
                        _pos(key, etag, n),
                    )
                )
            else:
                chunk.values.append(dict(zip(header, row, strict=True)))
                chunk.lines.append(n)
            if len(chunk) >= CHUNK:
                chunk.last = n
                yield chunk
                chunk = Chunk()
    except _BAD_CONTENT as exc:
        bad = exc  # hand on what was read before the content went bad, then fail
    if len(chunk):
        chunk.last = n
        yield chunk
    if bad is not None:
        raise bad


def _json(body: IO[bytes], key: str, etag: str, skip: int) -> Iterator[Chunk]:
    """One document, or the elements of a top-level array streamed one at a time (ijson),
    so a large array is never held whole."""
    peek = _Peek(body)
    first = peek.first_significant()
    if first is None:
        return  # an empty object body
    if first != b"[":
        yield from _json_document(peek, key, etag, skip)
        return
    chunk = Chunk()
    n = 0
    bad: BaseException | None = None
    try:
        for value in ijson.items(peek, "item", use_float=True):
            n += 1
            if n <= skip:
                continue
            if type(value) is dict:
                chunk.values.append(value)
                chunk.lines.append(n)
            else:
                chunk.poison.append(
                    Poison(
                        orjson.dumps(value),
                        "PoisonRecord",
                        f"element {n}: expected a JSON object, got {type(value).__name__}",
                        _pos(key, etag, n),
                    )
                )
            if len(chunk) >= CHUNK:
                chunk.last = n
                yield chunk
                chunk = Chunk()
    except _BAD_CONTENT as exc:
        bad = exc  # hand on what was read before the content went bad, then fail
    if len(chunk):
        chunk.last = n
        yield chunk
    if bad is not None:
        raise bad


def _json_document(body: IO[bytes] | _Peek, key: str, etag: str, skip: int) -> Iterator[Chunk]:
    """A body that is not an array: one document, read whole (it is one record)."""
    data = body.read()
    if skip >= 1:
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        poison = Poison(
            data[:1000], "JSONDecodeError", f"not valid JSON: {exc}", _pos(key, etag, 1)
        )
        yield Chunk(poison=[poison], last=1)
        return
    if type(doc) is dict:
        yield Chunk(values=[doc], lines=[1], last=1)
    else:
        poison = Poison(
            data[:1000],
            "PoisonRecord",
            f"element 1: expected a JSON object, got {type(doc).__name__}",
            _pos(key, etag, 1),
        )
        yield Chunk(poison=[poison], last=1)


class _Peek(io.RawIOBase):
    """A readable view of ``body`` that can look at its first non-blank byte first."""

    def __init__(self, body: IO[bytes]) -> None:
        self._body = body
        self._head = b""

    def readable(self) -> bool:
        return True

    def first_significant(self) -> bytes | None:
        """The first byte that is not whitespace (None: the body is blank)."""
        while True:
            block = self._body.read(READ_SIZE)
            if not block:
                return None
            stripped = block.lstrip()
            if stripped:
                self._head = stripped
                return stripped[:1]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                out = self._head + self._body.read()
                self._head = b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._body.read(size)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)
