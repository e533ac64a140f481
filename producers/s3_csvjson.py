"""The ``csv`` and ``json`` parsers of S3 object bodies (see ``s3_formats`` for the contract:
positions, poison, and what each recovers of a damaged object)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any

import ijson
import orjson

from producers.batch import Poison
from producers.s3_items import BAD_CONTENT, BOM, CHUNK, Chunk, position, unreadable

__all__ = ["csv_chunks", "json_chunks"]

READ_SIZE = 1 << 20
_NEWLINES = (b"\n", b"\r")


class _TextLines:
    """The lines of a binary body with their line ends (``\\n``, ``\\r\\n`` or a lone
    ``\\r``, as a text file opened with ``newline=""`` reads them), a byte order mark at the
    start dropped. ``pending`` holds the lines given since the caller last cleared it (the
    row being read), ``at`` the decoded offset of the next line; when a read fails, the
    error passes and ``rest`` holds the unterminated line read before it, ``read`` the
    bytes read."""

    __slots__ = ("at", "body", "pending", "read", "rest")

    def __init__(self, body: IO[bytes]) -> None:
        self.body = body
        self.pending: list[bytes] = []
        self.at = 0
        self.rest = b""
        self.read = 0

    def start(self) -> int:
        """The decoded offset of the first pending line (or of the next line)."""
        return self.at - sum(map(len, self.pending))

    def __iter__(self) -> Iterator[str]:
        """Each line decoded from UTF-8 (UnicodeDecodeError: not UTF-8)."""
        rest = b""
        first = True
        pending = self.pending
        while True:
            try:
                block = self.body.read(READ_SIZE)
            except BaseException:
                self.rest = rest
                raise
            self.read += len(block)
            data = rest + block
            if first and block and len(data) < len(BOM) and BOM.startswith(data):
                rest = data  # a short first read: wait for the whole mark
                continue
            if first:
                first = False
                if data.startswith(BOM):
                    data = data[len(BOM) :]
                    self.at = len(BOM)
            lines = data.splitlines(keepends=True)
            rest = b""
            # an unterminated last line, or a "\r" that a "\n" may follow, waits for more
            if block and lines and (not lines[-1].endswith(_NEWLINES) or data.endswith(b"\r")):
                rest = lines.pop()
            for line in lines:
                pending.append(line)
                self.at += len(line)
                yield line.decode()
            if not block:
                return


def csv_chunks(body: IO[bytes], key: str, etag: str, skip: int, delimiter: str) -> Iterator[Chunk]:
    """The rows of a csv body as records keyed by its header's names (see ``s3_formats``)."""
    lines = _TextLines(body)
    reader = csv.reader(lines, delimiter=delimiter)
    chunk = Chunk()
    n = 0  # data rows so far
    bad: BaseException | None = None
    try:
        header = next(reader, None)
        lines.pending.clear()
        if header is None:
            return
        width = len(header)
        for row in reader:
            lines.pending.clear()
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
                        position(key, etag, n),
                    )
                )
            else:
                chunk.values.append(dict(zip(header, row, strict=True)))
                chunk.lines.append(n)
            if len(chunk) >= CHUNK:
                chunk.last = n
                yield chunk
                chunk = Chunk()
    except BAD_CONTENT as exc:
        bad = exc  # hand on the rows read whole before the content went bad, then say where
    if len(chunk):
        chunk.last = n
        yield chunk
    if bad is not None and n + 1 > skip:
        partial = b"".join(lines.pending)  # the row not read whole, so far
        if isinstance(bad, UnicodeDecodeError):  # the bad byte, in the last pending line
            offset = lines.at - len(lines.pending[-1]) + bad.start
        elif isinstance(bad, csv.Error):
            offset = lines.start()
        else:
            offset, partial = lines.read, partial + lines.rest
        yield unreadable(bad, key, etag, n + 1, item="row", offset=offset, partial=partial)


def json_chunks(
    body: IO[bytes],
    key: str,
    etag: str,
    skip: int,
    again: Callable[[], tuple[IO[bytes], Callable[[], None]]] | None = None,
) -> Iterator[Chunk]:
    """One document, or the elements of a top-level array streamed one at a time (ijson),
    so a large array is never held whole. ``again()``: (the decoded body from its start, its
    closer), to read an array again past a number its fast parse cannot hold."""
    peek = _Peek(body)
    try:
        first = peek.first_significant()
    except BAD_CONTENT as exc:  # only blanks (or a BOM) were read: no bytes for the value
        if skip < 1:
            yield unreadable(exc, key, etag, 1, item="element", offset=peek.nread, partial=b"")
        return
    if first is None:
        return  # an empty object body
    if first != b"[":
        yield from _json_document(peek, key, etag, skip)
        return
    chunk = Chunk()
    n = 0
    bad: BaseException | None = None
    elements = _Elements(peek, again)
    try:
        for value in elements:
            n += 1
            if n <= skip:
                continue
            if type(value) is dict:
                chunk.values.append(value)
                chunk.lines.append(n)
            else:
                chunk.poison.append(_not_an_object(value, n, key, etag))
            if len(chunk) >= CHUNK:
                chunk.last = n
                yield chunk
                chunk = Chunk()
    except BAD_CONTENT as exc:
        bad = exc  # hand on the elements read whole before the content went bad, then say where
    if len(chunk):
        chunk.last = n
        yield chunk
    if bad is not None and n + 1 > skip:
        peek = elements.peek
        offset = peek.nread if peek.failed else None  # ijson's own errors say where themselves
        yield unreadable(bad, key, etag, n + 1, item="element", offset=offset)


def _not_an_object(value: Any, n: int, key: str, etag: str) -> Poison:
    if type(value) is _OutOfRange:
        return Poison(
            b"",
            "PoisonRecord",
            f"element {n}: a number past the double range ({value.text}); JSON output cannot "
            "carry it, fix the object",
            position(key, etag, n),
        )
    return Poison(
        orjson.dumps(value),
        "PoisonRecord",
        f"element {n}: expected a JSON object, got {type(value).__name__}",
        position(key, etag, n),
    )


class _OutOfRange:
    """An element holding a number past the double range (``text``)."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Elements:
    """The elements of the array ``peek`` reads (its ``[`` next), as ijson parses them with
    floats as floats. That parse (yajl's) stops at an integer past the signed 64-bit range
    (ijson issue #153) or a number past the double range: then, when ``again`` can give the
    body once more, the elements after the ones given are read from a second parse that
    reads numbers as ints and Decimals (floats made of them; a number past the double range
    makes its element an ``_OutOfRange``). ``peek`` is the reader in use."""

    def __init__(
        self, peek: _Peek, again: Callable[[], tuple[IO[bytes], Callable[[], None]]] | None
    ) -> None:
        self.peek = peek
        self._again = again

    def __iter__(self) -> Iterator[Any]:
        given = 0
        try:
            for value in ijson.items(self.peek, "item", use_float=True):
                given += 1
                yield value
            return
        except ijson.JSONError as exc:
            if self._again is None or "overflow" not in str(exc):
                raise
        body, close = self._again()
        try:
            self.peek = _Peek(body)
            self.peek.first_significant()
            for i, value in enumerate(ijson.items(self.peek, "item", use_float=False), 1):
                if i > given:
                    try:
                        yield _floats(value)
                    except OverflowError as too_large:
                        yield _OutOfRange(str(too_large))
        finally:
            close()


def _floats(value: Any) -> Any:
    """``value`` with its Decimals as floats (OverflowError naming a number past them)."""
    kind = type(value)
    if kind is Decimal:
        number = float(value)
        if not math.isfinite(number):
            raise OverflowError(str(value))
        return number
    if kind is dict:
        return {k: _floats(v) for k, v in value.items()}
    if kind is list:
        return [_floats(v) for v in value]
    return value


def _json_document(peek: _Peek, key: str, etag: str, skip: int) -> Iterator[Chunk]:
    """A body that is not an array: one document, read whole (it is one record)."""
    parts: list[bytes] = []
    try:
        while block := peek.read(READ_SIZE):
            parts.append(block)
    except BAD_CONTENT as exc:
        if skip < 1:
            partial = b"".join(parts)
            yield unreadable(exc, key, etag, 1, item="element", offset=peek.nread, partial=partial)
        return
    if skip >= 1:
        return
    data = b"".join(parts)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        poison = Poison(
            data[:1000], "JSONDecodeError", f"not valid JSON: {exc}", position(key, etag, 1)
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
            position(key, etag, 1),
        )
        yield Chunk(poison=[poison], last=1)


class _Peek(io.RawIOBase):
    """A readable view of ``body`` that can look at its first significant byte first (a byte
    order mark and blanks before it are dropped). ``nread`` counts the bytes read from
    ``body``; ``failed`` tells whether a read of it raised."""

    def __init__(self, body: IO[bytes]) -> None:
        self._body = body
        self._head = b""
        self.nread = 0
        self.failed = False

    def readable(self) -> bool:
        return True

    def _take(self, size: int) -> bytes:
        try:
            block = self._body.read(size)
        except BaseException:
            self.failed = True
            raise
        self.nread += len(block)
        return block

    def first_significant(self) -> bytes | None:
        """The first byte that is not whitespace (None: the body is blank)."""
        data = b""
        mark = True  # a BOM may still come
        while True:
            block = self._take(READ_SIZE)
            data += block
            if mark:
                if block and len(data) < len(BOM) and BOM.startswith(data):
                    continue  # a short first read: wait for the whole mark
                mark = False
                data = data.removeprefix(BOM)
            stripped = data.lstrip()
            if stripped:
                self._head = stripped
                return stripped[:1]
            if not block:
                return None
            data = b""

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (``size`` must be given: a body is never read whole)."""
        if size is None or size < 0:
            raise ValueError("read a json body in parts")
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._take(size)

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)
