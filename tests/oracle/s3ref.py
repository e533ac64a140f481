"""The reference reader of the source differential oracle: what an S3 source must make of an
object body, decided with the standard library only (zlib, json, csv, codecs), written
without looking at ``producers/``'s parsing code; ``s3ref_values`` has the encoding half.

The contract it encodes (``producers/s3_formats.py``'s docstring and docs/operations.md):

- gzip: the decoded bytes are what zlib gives fed one byte at a time (members one after the
  other, zero padding after a member ignored), up to the first byte it refuses or the end of
  the data; the object is *damaged* when that is not the clean end of the last member. A
  damaged object ends with one dead letter at the first item not read whole, with the
  decoded byte offset where reading stopped and that item's decoded bytes as its value.
- A UTF-8 byte order mark at the start of the decoded body is ignored (offsets count it).
- jsonl: lines end at ``\\n`` (a ``\\r`` before it is dropped); a line is read only when its
  ``\\n`` was decoded or it is the last line of an undamaged body. Blank lines (ASCII
  whitespace only) are skipped, positions still count them. A line is a record when it is
  UTF-8 JSON (RFC 8259: no NaN, no lone surrogate escapes, no raw control characters) whose
  value is an object; else poison. A number past the double range in a field the source
  does not read is JSON like any other (the line is sent as read).
- csv: lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``; rows as the stdlib csv reader makes
  them of UTF-8 lines; blank rows skipped (not counted); a row whose field count is not the
  header's is poison. A line that is not UTF-8 ends the object at its row (offset: the bad
  byte), a csv error at its row (offset: the row's start); at damage, the row not ended yet
  (a "\\r" last might still have had its "\\n") is the letter's, with its lines so far.
- json: a top-level array's elements, each parsed whole (a number once a byte that cannot
  continue it follows), objects are records, other values poison; whitespace between
  elements is also \\v and \\f (yajl's). Anything unreadable ends the object at the next
  element, with an empty value and an offset only when the decoded bytes of a damaged
  object ran out (bad text is placed by the parser's message). A body that is not an array
  is one document: a record if it is an object and the body is undamaged, else the letter
  with the body as its value.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from s3ref_values import Poison, exact, key_bytes, no_surrogates, strict, time_ms, walk

__all__ = ["Expected", "decode_gzip", "expect"]

BOM = b"\xef\xbb\xbf"


@dataclass
class Expected:
    """Records as (position, key bytes, value, event time ms): the value is the line's bytes
    for jsonl, the parsed object otherwise; ``poison`` the positions of poison items (with
    the line's bytes for jsonl); ``end`` the dead letter of damage: (position, decoded
    offset or None, the unfinished item's bytes or None when not checked)."""

    records: list[tuple[int, bytes | None, Any, int | None]] = field(default_factory=list)
    poison: dict[int, bytes | None] = field(default_factory=dict)
    end: tuple[int, int | None, bytes | None] | None = None


def decode_gzip(body: bytes) -> tuple[bytes, bool]:
    """(the decoded bytes, damaged) of a gzip body (see the module docstring)."""
    out: list[bytes] = []
    rest = body
    first = True
    while True:
        if not first:
            rest = rest.lstrip(b"\x00")
        if not rest:
            return b"".join(out), False
        first = False
        d = zlib.decompressobj(wbits=31)
        at = 0
        while at < len(rest) and not d.eof:
            piece = rest[at : at + 4096]
            saved = d.copy()
            try:
                out.append(d.decompress(piece))
            except zlib.error:
                d = saved
                for i in range(len(piece)):
                    try:
                        out.append(d.decompress(piece[i : i + 1]))
                    except zlib.error:
                        return b"".join(out), True
            at += len(piece)
        if not d.eof:
            return b"".join(out), True
        rest = d.unused_data + rest[at:]


def expect(
    fmt: str, body: bytes, gz: bool, key: str | None, time: str | None, delim: str
) -> Expected:
    """What the source must make of ``body`` (see the module docstring)."""
    if gz:
        data, damaged = decode_gzip(body)
    else:
        data, damaged = body, False
    start = len(BOM) if data.startswith(BOM) else 0
    exp = Expected()
    if fmt == "jsonl":
        _jsonl(exp, data, start, damaged, key, time)
    elif fmt == "csv":
        _csv(exp, data, start, damaged, key, time, delim)
    else:
        _json(exp, data, start, damaged, key, time)
    return exp


# -- formats --------------------------------------------------------------------------------


def _jsonl(
    exp: Expected, data: bytes, start: int, damaged: bool, key: str | None, time: str | None
) -> None:
    parts = data[start:].split(b"\n")
    unfinished = parts.pop() if damaged else None
    if not damaged and parts and parts[-1] == b"":
        parts.pop()
    for n, raw in enumerate(parts, 1):
        line = raw.removesuffix(b"\r")
        if not line.strip():
            continue
        try:
            value = strict(line.decode("utf-8"))
        except ValueError:
            exp.poison[n] = line
            continue
        if not isinstance(value, dict):
            exp.poison[n] = line
            continue
        try:
            exp.records.append((n, key_bytes(value, key), line, time_ms(value, time)))
        except Poison:
            exp.poison[n] = line
    if unfinished is not None:
        exp.end = (len(parts) + 1, len(data), unfinished)


def _record(
    exp: Expected, n: int, value: dict[str, Any], key: str | None, time: str | None
) -> None:
    """A csv or json record, or poison when it cannot be encoded."""
    try:
        walk(value, exact)
        exp.records.append((n, key_bytes(value, key), value, time_ms(value, time)))
    except (Poison, ValueError, TypeError):
        exp.poison[n] = None


def _csv_lines(data: bytes, start: int, damaged: bool) -> list[tuple[int, bytes]]:
    """(decoded offset, bytes) of each line read (see the module docstring)."""
    lines = data[start:].splitlines(keepends=True)
    if damaged and lines and (not lines[-1].endswith((b"\n", b"\r")) or data.endswith(b"\r")):
        lines.pop()  # unfinished (a last "\r" might have had a "\n" after it)
    out, at = [], start
    for line in lines:
        out.append((at, line))
        at += len(line)
    return out


def _csv(
    exp: Expected,
    data: bytes,
    start: int,
    damaged: bool,
    key: str | None,
    time: str | None,
    delim: str,
) -> None:
    lines = _csv_lines(data, start, damaged)
    pending: list[tuple[int, bytes]] = []
    bad: list[int] = []  # where the line that is not UTF-8 has its bad byte

    def text() -> Any:
        for at, line in lines:
            pending.append((at, line))
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append(at + exc.start)
                raise
        if damaged:  # not the end of the data: a row still open is unfinished
            raise _Damaged

    reader = csv.reader(text(), delimiter=delim)
    n = 0
    header: list[str] | None = None
    try:
        for row in reader:
            pending.clear()
            if header is None:
                header = row
                continue
            if not row:
                continue
            n += 1
            if len(row) != len(header):
                exp.poison[n] = None
            else:
                _record(exp, n, dict(zip(header, row, strict=True)), key, time)
    except UnicodeDecodeError:
        exp.end = (n + 1, bad[0], b"".join(line for _, line in pending))
    except csv.Error:
        at = pending[0][0] if pending else len(data)
        exp.end = (n + 1, at, b"".join(line for _, line in pending))
    except _Damaged:
        rest = data[start + sum(len(line) for _, line in lines) :]
        exp.end = (n + 1, len(data), b"".join(line for _, line in pending) + rest)


class _Damaged(Exception):
    """The decoded bytes of a damaged object ended."""


def _json(
    exp: Expected, data: bytes, start: int, damaged: bool, key: str | None, time: str | None
) -> None:
    body = data[start:].lstrip()  # ASCII whitespace, as a blank body's
    if not body:
        if damaged:
            exp.end = (1, len(data), b"")
        return
    if not body.startswith(b"["):  # a document
        if damaged:
            exp.end = (1, len(data), body)
            return
        try:
            value = strict(body.decode("utf-8"))
        except ValueError:
            exp.poison[1] = None
            return
        if isinstance(value, dict):
            _record(exp, 1, value, key, time)
        else:
            exp.poison[1] = None
        return
    # an incomplete UTF-8 sequence at the very end is data still to come, not an error
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(body, final=not damaged)
    _array(exp, text, len(data), damaged, key, time)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: Whitespace around a json array's elements: yajl (ijson's parser) also skips \v and \f.
_WS = " \t\r\n\x0b\x0c"


def _array(
    exp: Expected, s: str, size: int, damaged: bool, key: str | None, time: str | None
) -> None:
    """The elements of the array text ``s`` (its ``[`` first): a streaming parser gives
    each element once it is whole; a number is whole once a byte that cannot continue it
    follows. The letter's offset is given when the text ran out inside an element of a
    damaged object (its damage is the reason), not for bad text."""
    decoder = json.JSONDecoder(parse_constant=_refuse)
    i, n = 1, 0
    broken = out_of_data = False
    while True:
        while i < len(s) and s[i] in _WS:
            i += 1
        if n == 0 and i < len(s) and s[i] == "]":
            i += 1
            break
        try:
            value, j = decoder.raw_decode(s, i)
        except json.JSONDecodeError as exc:
            broken = True
            out_of_data = _ran_out(s, i, exc)
            break
        except ValueError:  # NaN, Infinity
            broken = True
            break
        if isinstance(value, int | float) and not isinstance(value, bool):
            if j >= len(s):
                broken = out_of_data = True
                break
            if s[j] in ".eE+-":  # not a number yet: a malformed one
                broken = True
                break
        try:
            no_surrogates(value)  # surrogateescape: bytes that are not UTF-8
        except ValueError:
            broken = True
            break
        n += 1
        if isinstance(value, dict):
            _record(exp, n, value, key, time)
        else:
            exp.poison[n] = None
        i = j
        while i < len(s) and s[i] in _WS:
            i += 1
        if i >= len(s):
            broken = out_of_data = True
            break
        if s[i] == ",":
            i += 1
            continue
        if s[i] == "]":
            i += 1
        else:
            broken = True
        break
    if not broken and s[i:].strip(_WS):
        broken = True  # content after the array
    if not broken and not damaged:
        return
    if not broken:  # the array ended, then the object's damage (a CRC, say)
        exp.end = (n + 1, size, b"")
        return
    exp.end = (n + 1, size if damaged and out_of_data else None, b"")


#: What may be left of a json text cut inside a literal or a number.
_CUT_TOKEN = re.compile(r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|-?\d*(\.\d*)?([eE][+-]?\d*)?")


def _ran_out(s: str, i: int, exc: json.JSONDecodeError) -> bool:
    """Whether parsing at ``i`` failed for want of more text rather than for bad text."""
    if any("\udc80" <= c <= "\udcff" for c in s[i:]):
        return False  # bytes that are not UTF-8: a parser refuses them where they are
    if exc.msg.startswith("Unterminated string"):
        return True
    tail = s[exc.pos :]
    if exc.msg.startswith("Invalid \\uXXXX escape"):  # cut inside an escape (or its pair)
        return len(tail) <= 12 and all(c in "\\u0123456789abcdefABCDEF" for c in tail)
    return _CUT_TOKEN.fullmatch(tail) is not None
