"""Streaming parsers for S3 object bodies: ``jsonl``, ``csv`` and ``json``, optionally gzip.

Each parser reads a binary stream and yields ``Chunk``s: records in columns (values, their
source bytes for jsonl, their positions) and the poison met among them. A position ``n`` is
1-based inside the object: the line for jsonl, the data row (header excluded) for csv, the
array element for json. Items with ``n <= skip`` are not yielded (resume inside an object).
Every format streams with bounded memory: jsonl and csv line by line, a json array element by
element (ijson); a json body that is one document is read whole (it is one record). A UTF-8
byte order mark at the start of the (decoded) body is ignored in every format, as RFC 8259
allows; byte offsets still count it.

Poison: a jsonl line that is not a JSON object, a csv row whose field count differs from the
header's, an array element that is not an object; blank jsonl lines are skipped.

Unreadable content (not gzip, a truncated or corrupt gzip object, not UTF-8 CSV, broken CSV
quoting, a json array broken part-way) ends the object: every item read whole before it is
handed on, then one poison item (``s3_items.unreadable``) at the first item not read whole,
whose position also holds ``offset``, the decoded byte offset where reading stopped, and
whose value holds that item's decoded bytes before it. What each format recovers:

- jsonl: every line whose terminating newline was decoded (the last line of an intact body
  needs none); the letter's value is the unterminated line's decoded bytes.
- csv: every row that ended (its last line's newline decoded, a quoted field closed) before
  the damage; the value is the unfinished row's bytes (its lines so far). A line that is not
  UTF-8 ends the object at its row (offset: the bad byte) with the row's bytes as the value.
- json array: every element parsed whole before the damage (a number needs the byte after
  it); the streaming parser keeps no element bytes, so the value is empty. A json document
  that is not an array is one item: any damage makes it the dead letter, its decoded bytes
  the value. ``offset`` is given for damaged gzip; for broken JSON syntax ijson's message
  says where. ijson's fast parse stops at an integer past the signed 64-bit range or a
  number past the double range: the array is then read again (``reopen(0)`` or seeking
  back; without either it ends there) with exact numbers, and an element holding a number
  past the double range is poison.

Gzip is read by ``s3_gzip.GzipReader``: ISA-L (the ``isal`` package) when installed, else
zlib; it gives every byte decoded before damage, exactly, reading a damaged member again
through ``reopen(offset)`` (see there). A jsonl ``Projection`` (``producers.projection``)
that uses the native reader gets whole chunks of up to ``NATIVE_CHUNK`` lines, encoded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import orjson

from producers.batch import Poison
from producers.projection import Projection
from producers.s3_csvjson import csv_chunks, json_chunks
from producers.s3_gzip import GZIP_READER, GzipReader
from producers.s3_items import BAD_CONTENT, BOM, CHUNK, Chunk, position, unreadable

__all__ = ["CHUNK", "GZIP_READER", "Chunk", "line_blocks", "parse", "read_lines"]

#: Lines per chunk read by the native reader: each call gives up the GIL and must take it back
#: from the producing thread, so fewer, larger calls wait less (measured on a 1.3 M-line
#: object, ratio to raw producing: 2,000 lines 0.51-0.62, 8,000 0.62-0.68, 20,000 0.54-0.61).
NATIVE_CHUNK = 8000
#: ... and at most about this many bytes of lines (memory stays bounded for long lines).
NATIVE_CHUNK_BYTES = 2 << 20
READ_SIZE = 1 << 20
#: A JSON escape of a UTF-16 surrogate (paired or not).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def line_blocks(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """The lines of ``stream`` without their ``\\n`` (or ``\\r\\n``), one list per 1 MiB
    block read (a line cut by a block's end comes whole at the start of the next list); never
    an empty list. A byte order mark at the start is dropped."""
    for lines, _ in _LineBlocks(stream):
        yield lines


class _LineBlocks:
    """Iterates ``line_blocks`` with the bytes each list was split from (line ends
    included). When a read fails, the error passes and ``rest`` holds the bytes of the
    unterminated line read before it, ``read`` the bytes read (a dropped BOM included)."""

    __slots__ = ("escapes", "read", "rest", "scan", "stream")

    def __init__(self, stream: IO[bytes], scan: bool = False) -> None:
        self.stream = stream
        self.rest = b""
        self.read = 0
        self.scan = scan  # look for surrogate escapes: ``escapes`` tells of the last block's
        self.escapes = False

    def __iter__(self) -> Iterator[tuple[list[bytes], int]]:
        stream = self.stream
        rest = b""
        start = True  # a BOM may still come
        while True:
            try:
                block = stream.read(READ_SIZE)
            except BaseException:
                self.rest = rest
                raise
            if not block:
                break
            self.read += len(block)
            data = rest + block
            if start:
                if len(data) < len(BOM) and BOM.startswith(data):
                    rest = data  # a short first read: wait for the whole mark
                    continue
                start = False
                if data.startswith(BOM):
                    data = data[len(BOM) :]
            if self.scan:  # a memchr for the backslash: a regex only where there is one
                self.escapes = b"\\" in data and _SURROGATE_ESCAPE.search(data) is not None
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
    reopen: Callable[[int], IO[bytes]] | None = None,
) -> Iterator[Chunk]:
    """Chunks of parsed items of one object (see the module docstring); ``projection``
    (jsonl only): values hold only its fields, the raws are the lines; ``reopen(offset)``
    (gzip): the object's bytes from a compressed offset, to read a damaged member again."""
    body = cast(IO[bytes], GzipReader(stream, reopen)) if gzipped else stream
    if fmt == "jsonl":
        return _guarded(_jsonl(body, key, etag, skip, projection), key, etag)
    if fmt == "csv":
        return _guarded(csv_chunks(body, key, etag, skip, delimiter), key, etag)
    if fmt == "json":
        again = _again(stream, gzipped, reopen)
        return _guarded(json_chunks(body, key, etag, skip, again), key, etag)
    raise ValueError(f"unknown file format {fmt!r} (expected json, jsonl or csv)")


def _again(
    stream: IO[bytes], gzipped: bool, reopen: Callable[[int], IO[bytes]] | None
) -> Callable[[], tuple[IO[bytes], Callable[[], None]]] | None:
    """A way to read the object's decoded body again from its start, with what closes it:
    ``reopen(0)``, or ``stream`` seeked back; None when neither can be done."""
    if reopen is not None:

        def raw() -> tuple[IO[bytes], Callable[[], None]]:
            again = reopen(0)
            return again, again.close

    elif _seekable(stream):
        origin = stream.tell()

        def raw() -> tuple[IO[bytes], Callable[[], None]]:
            stream.seek(origin)
            return stream, lambda: None

    else:
        return None

    def body() -> tuple[IO[bytes], Callable[[], None]]:
        data, close = raw()
        return (cast(IO[bytes], GzipReader(data, reopen)) if gzipped else data), close

    return body


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def _guarded(chunks: Iterator[Chunk], key: str, etag: str) -> Iterator[Chunk]:
    """Pass ``chunks`` on; unreadable content the parser did not place ends the object with
    one poison item (after the last good position) instead of stopping the source."""
    last = 0
    try:
        for chunk in chunks:
            last = chunk.last
            yield chunk
    except BAD_CONTENT as exc:
        yield unreadable(exc, key, etag, last + 1, item="item", offset=None)


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
    blocks = _LineBlocks(body, scan=native)
    escaped = False  # the chunk may hold a surrogate escape: the native reader must not read it
    try:
        for lines, nbytes in blocks:
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
                escaped = escaped or blocks.escapes
                at += len(part)
                if len(chunk.lines) + len(chunk.poison) >= size:
                    chunk.last = first + at - 1
                    yield _native_chunk(chunk, key, etag, projection, escaped) if native else chunk
                    chunk = Chunk(raws=[])
                    escaped = False
    except BAD_CONTENT as exc:
        bad = exc  # hand on the lines read whole before the content went bad, then say where
    if chunk.lines or chunk.poison:
        chunk.last = n
        yield _native_chunk(chunk, key, etag, projection, escaped) if native else chunk
    if bad is not None and n + 1 > skip:
        partial = blocks.rest
        yield unreadable(bad, key, etag, n + 1, item="line", offset=blocks.read, partial=partial)


#: The ``values`` of a natively read chunk's records (see ``Chunk``).
_NO_VALUE: dict[str, Any] = {}


def _pend_lines(
    lines: list[bytes], first: int, chunk: Chunk, key: str, etag: str, projection: Projection | None
) -> None:
    """Add consecutive jsonl lines (numbered from ``first``, blank ones too) to ``chunk``
    unread, for ``_native_chunk``; same arguments as ``_add_lines``."""
    chunk.raws.extend(lines)  # type: ignore[union-attr]
    chunk.lines.extend(range(first, first + len(lines)))


def _native_chunk(
    chunk: Chunk, key: str, etag: str, projection: Projection | None, escaped: bool
) -> Chunk:
    """``chunk`` (every line of it, blank ones too, numbered consecutively) read by the
    native reader; when it declines, by the Python path (which also finds the poison). A
    chunk that may hold a ``\\uD800``-``\\uDFFF`` escape (``escaped``) takes the Python
    path: the native reader does not check that a surrogate escape in a field it skips is
    paired, and a lone one makes the line poison."""
    assert projection is not None and chunk.raws is not None
    encoded = None if escaped else projection.encode(chunk.raws)
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
    projected fields), a poison item, or nothing for a blank line. With a projection a line
    is read as the projection reads a whole chunk (a line must not become a record or poison
    depending on the lines around it: orjson, unlike msgspec, refuses a number past the
    double range in a field not read, and reads an integer past 64 bits as a float)."""
    if projection is not None:
        values = projection.values([line])
        if values is not None:
            chunk.values.append(values[0])
            chunk.raws.append(line)  # type: ignore[union-attr]
            chunk.lines.append(n)
            return
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if line.strip():
            message = f"line {n}: not valid JSON: {exc}"
            chunk.poison.append(Poison(line, "JSONDecodeError", message, position(key, etag, n)))
        return
    if type(value) is not dict:
        message = f"line {n}: expected a JSON object, got {type(value).__name__}"
        chunk.poison.append(Poison(line, "PoisonRecord", message, position(key, etag, n)))
        return
    if projection is not None:
        value = {f: value[f] for f in projection.fields if f in value}
    chunk.values.append(value)
    chunk.raws.append(line)  # type: ignore[union-attr]
    chunk.lines.append(n)
