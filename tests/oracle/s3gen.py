"""Seeded random S3 object bodies for the source differential oracle (``test_source_oracle``).

``generate(seed)`` makes one ``S3Case``: a format (jsonl, json array or document, csv), the
source's key and event-time fields, and a body with what real objects hold: a byte order
mark, CRLF or LF, blank lines, lines longer than 2 MiB (past the native reader's chunk
bound), CSV quoting (delimiters, quotes and newlines in quoted fields), unicode (escaped and
raw, surrogate pairs, lone surrogates, invalid UTF-8), malformed lines or rows, optionally
gzip, and then damage: a gzip object cut at a random byte, corrupted somewhere (a few bytes
xor-ed, a run of 0xff, one bit), padded with zeros or made of several members; a plain object
cut at a random byte. Same seed, same case.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import random
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["S3Case", "generate"]


@dataclass
class S3Case:
    """One generated object and how the source reads it."""

    seed: int
    fmt: str  # jsonl | json | csv
    gz: bool
    key: str | None  # the source's key field
    time: str | None  # the source's timestamp field
    delimiter: str
    body: bytes
    notes: list[str] = field(default_factory=list)  # what was generated, for a reproduction

    def params(self) -> dict[str, Any]:
        """Everything but the body (JSON-ready)."""
        out = asdict(self)
        del out["body"]
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.params()
        out["body_zlib_b64"] = base64.b64encode(zlib.compress(self.body, 9)).decode()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> S3Case:
        data = dict(data)
        body = zlib.decompress(base64.b64decode(data.pop("body_zlib_b64")))
        return cls(body=body, **data)


def generate(seed: int) -> S3Case:
    """The case of ``seed`` (see the module docstring)."""
    rnd = random.Random(f"s3-source-{seed}")
    fmt = rnd.choices(["jsonl", "csv", "json"], [50, 25, 25])[0]
    key, time = rnd.choices([("id", "at"), ("id", None), (None, "at"), (None, None)], [7, 1, 1, 1])[
        0
    ]
    case = S3Case(seed, fmt, False, key, time, rnd.choice([",", ",", ";", "\t", "|"]), b"")
    size = rnd.choices(["small", "medium", "large", "native"], [70, 20, 7, 3])[0]
    n = {
        "small": rnd.randrange(0, 40),
        "medium": rnd.randrange(40, 600),
        "large": rnd.randrange(1500, 3000),  # past the Python reader's 2,000-item chunks
        "native": rnd.randrange(8000, 9000),  # past the native reader's 8,000-line chunks
    }[size]
    long = rnd.random() < 0.02  # one value past 2 MiB
    newline = "\r\n" if rnd.random() < 0.3 else "\n"
    case.notes.append(f"{size}: {n} items, newline {newline!r}, long value {long}")
    if fmt == "jsonl":
        text = _jsonl(rnd, n, long, newline, case.notes)
    elif fmt == "csv":
        text = _csv(rnd, n, long, newline, case.delimiter, case.notes)
    else:
        text = _json(rnd, n, long, case.notes)
    if rnd.random() < 0.2:
        text = b"\xef\xbb\xbf" + text
        case.notes.append("BOM")
    case.gz = rnd.random() < 0.5
    case.body = _damage(rnd, text, case.gz, case.notes)
    return case


# -- values ---------------------------------------------------------------------------------

_WORDS = ["a", "order", "Zoë", "日本", "naïve", "𝄞", "x y", "tab\there", 'quote"d', "back\\slash"]


def _text(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.6:
        return rnd.choice(_WORDS) + str(rnd.randrange(1000))
    if kind < 0.75:
        return "".join(rnd.choice("ab,;|\"'\n\r\t é€😀\u2028\x7f") for _ in range(rnd.randrange(8)))
    if kind < 0.85:
        return ""
    if kind < 0.93:
        return "\ud83d\ude00 emoji"  # a surrogate pair once escaped
    return "lone \ud800" if rnd.random() < 0.5 else "lone \udc00 low"


def _key(rnd: random.Random) -> Any:
    return rnd.choices(
        [
            lambda: f"k{rnd.randrange(10**6)}",
            lambda: _text(rnd),
            lambda: rnd.randrange(-(10**6), 10**6),
            lambda: rnd.choice([0, -1, 2**63 - 1, 2**64, -(2**63), 10**30]),
            lambda: rnd.choice([1.5, -0.0, 1e16, 0.1, 100.0]),
            lambda: rnd.choice([True, False, None]),
            lambda: rnd.choice([[1, "a"], {"a": 1}]),
        ],
        [40, 15, 20, 8, 6, 8, 3],
    )[0]()


def _iso(rnd: random.Random) -> str:
    y, mo, d = (
        rnd.choice([1970, 2024, 1969, 1, 9999, 2000]),
        rnd.randrange(1, 13),
        rnd.randrange(1, 29),
    )
    out = f"{y:04d}-{mo:02d}-{d:02d}"
    if rnd.random() < 0.85:
        out += rnd.choice("TTT ") + f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}"
        if rnd.random() < 0.8:
            out += f":{rnd.randrange(60):02d}"
            if rnd.random() < 0.5:
                out += "." + "".join(rnd.choices("0123456789", k=rnd.choice([1, 3, 6, 7, 9])))
        out += rnd.choice(["Z", "Z", "", "+00:00", "+05:30", "-08:00", "+14:00"])
    return out


def _time(rnd: random.Random) -> Any:
    return rnd.choices(
        [
            lambda: _iso(rnd),
            lambda: rnd.randrange(-(10**12), 2 * 10**12),
            lambda: rnd.choice([0, -1, 2**63, 1.5, -0.5, 1714521600123.9]),
            lambda: rnd.choice(
                ["2024-13-01", "2024-02-30T00:00:00Z", "not a time", "", "20240501"]
            ),
            lambda: rnd.choice([None, True, [1], {"t": 1}]),
        ],
        [70, 12, 6, 8, 4],
    )[0]()


def _record(rnd: random.Random) -> dict[str, Any]:
    """A value with the fields ``id`` and ``at`` (mostly) and a few others."""
    value: dict[str, Any] = {}
    if rnd.random() < 0.93:
        value["id"] = _key(rnd)
    if rnd.random() < 0.93:
        value["at"] = _time(rnd)
    for _ in range(rnd.randrange(4)):
        name = rnd.choice(["name", "n", "x", "nested", "é", "tags", "id2"])
        value[name] = rnd.choice(
            [
                lambda: _text(rnd),
                lambda: rnd.randrange(-(10**9), 10**9),
                lambda: rnd.random() * 10 ** rnd.randrange(-5, 20),
                lambda: {"a": [1, {"b": None}], "c": _text(rnd)},
                lambda: [_text(rnd), 1, 2.5, None, True],
            ]
        )()
    items = list(value.items())
    rnd.shuffle(items)
    return dict(items)


def _dumps(rnd: random.Random, value: Any) -> bytes:
    """JSON text of ``value``: escaped or raw non-ASCII, compact or spaced (a lone surrogate
    raw is the invalid UTF-8 of its code point)."""
    text = json.dumps(
        value,
        ensure_ascii=rnd.random() < 0.4,
        separators=rnd.choice([(",", ":"), (", ", ": ")]),
    )
    return text.encode("utf-8", "surrogatepass")


# -- formats --------------------------------------------------------------------------------


def _long_string() -> str:
    return "L" * ((2 << 20) + 1000)


def _jsonl(rnd: random.Random, n: int, long: bool, newline: str, notes: list[str]) -> bytes:
    lines: list[bytes] = []
    for _ in range(n):
        kind = rnd.random()
        if kind < 0.72:
            lines.append(_dumps(rnd, _record(rnd)))
        elif kind < 0.78:
            lines.append(rnd.choice([b"", b"", b"   ", b"\t", b"\x0c"]))
        elif kind < 0.86:
            good = _dumps(rnd, _record(rnd))
            lines.append(
                rnd.choice(
                    [
                        good[: rnd.randrange(len(good))],
                        good + b",",
                        b"{'id': 1}",
                        b'{"id": 1, "at": NaN}',
                        b'{"id": 1, "x": 1e400}',
                        b'{"id": 1e400}',
                        b"not json at all",
                        good.replace(b":", b"=", 1),
                        b'{"id": "a\x01b"}',
                        b'{"id": 1}\r{"id": 2}',
                        b'{"id": 1, "x": "\xff\xfe"}',
                        b'{"id": 1, "x": "\xed\xa0\x80"}',
                        b"\xef\xbb\xbf" + good,
                    ]
                )
            )
        elif kind < 0.92:
            lines.append(_dumps(rnd, rnd.choice([[1, 2], 3, "s", None, True, [{"id": 1}]])))
        elif kind < 0.96:
            lines.append(
                b'{"id": "k", "x": "\\ud800", "at": 1}'
                if rnd.random() < 0.5
                else b'{"id": 7, "at": "2024-05-01T00:00:00Z", "x": "\\udc00\\ud800"}'
            )
        else:
            lines.append(
                b'{"id": %d, "at": %d, "n": -0, "x": 123456789012345678901234567890}'
                % (rnd.randrange(10), rnd.randrange(10**12))
            )
    if long:
        at = rnd.randrange(len(lines) + 1)
        lines.insert(at, _dumps(rnd, {"id": "long", "at": 1, "pad": _long_string()}))
        notes.append(f"long line at {at + 1}")
    end = newline.encode()
    body = end.join(lines)
    if lines and rnd.random() < 0.8:
        body += end
    return body


def _csv(
    rnd: random.Random, n: int, long: bool, newline: str, delim: str, notes: list[str]
) -> bytes:
    header = rnd.choice(
        [["id", "at", "name"], ["at", "id", "note", "n"], ["id", "name"], ["name", "n"]]
    )
    if rnd.random() < 0.1:
        header = [*header, "id"]  # a repeated name: the last column wins
    out = io.StringIO(newline="")
    writer = csv.writer(
        out,
        delimiter=delim,
        lineterminator=newline,
        quoting=rnd.choice([csv.QUOTE_MINIMAL, csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    )
    writer.writerow(header)
    chunks: list[bytes] = [out.getvalue().encode()]
    for i in range(n):
        out.seek(0)
        out.truncate()
        kind = rnd.random()
        if kind < 0.85:
            row = [
                str(_time(rnd)) if h == "at" else str(_key(rnd)) if h == "id" else _text(rnd)
                for h in header
            ]
            if rnd.random() < 0.08:
                row = row[:-1] if rnd.random() < 0.5 else [*row, "extra"]  # a wrong field count
            writer.writerow([_paired(c) for c in row])
            chunks.append(out.getvalue().encode())
        elif kind < 0.93:
            chunks.append(rnd.choice([newline, " " + newline, delim + newline]).encode())
        elif kind < 0.97:
            chunks.append(b"\xff\xfe" + delim.encode() + b"bad" + newline.encode())  # not UTF-8
        else:
            chunks.append(
                rnd.choice(
                    [b'"unterminated' + delim.encode() + b"x", b'a"b' + delim.encode() + b'c"d"']
                )
                + newline.encode()
            )
        if long and i == n // 2:
            big = rnd.choice(["M" * 100_000, "F" * 140_000])  # the second passes csv's field limit
            writer.writerow(["long"] * (len(header) - 1) + [big])
            chunks.append(out.getvalue().encode())
            notes.append(f"long row after data row {i + 1}, field of {len(big)} chars")
    body = b"".join(chunks)
    if rnd.random() < 0.2:
        body = body.rstrip(b"\r\n")  # no newline after the last row
    return body


def _json(rnd: random.Random, n: int, long: bool, notes: list[str]) -> bytes:
    if rnd.random() < 0.12:  # a document, not an array
        notes.append("document")
        doc = rnd.choice([_record(rnd), _record(rnd), [1], "text", None])
        body = _dumps(rnd, _plain(doc))
        return rnd.choice([body, b"  \n" + body + b"\n", body[: max(1, len(body) // 2)]])
    elements: list[bytes] = []
    for _ in range(n):
        kind = rnd.random()
        if kind < 0.85:
            elements.append(_dumps(rnd, _plain(_record(rnd), ints=False)))
        elif kind < 0.87:
            elements.append(
                b'{"id": %d, "x": %s}'
                % (rnd.randrange(9), rnd.choice([b"1e400", b"-1E+999", b"1e308"]))
            )
        else:
            elements.append(_dumps(rnd, rnd.choice([1, -2.5, "s", None, True, [1, {"a": 2}]])))
    if long:
        elements.insert(
            rnd.randrange(len(elements) + 1), _dumps(rnd, {"id": "long", "pad": _long_string()})
        )
        notes.append("long element")
    sep = rnd.choice([b",", b", ", b",\n  ", b"\n,"])
    body = b"[" + rnd.choice([b"", b"\n  "]) + sep.join(elements) + rnd.choice([b"", b"\n"]) + b"]"
    if rnd.random() < 0.05:
        body += rnd.choice([b" x", b",", b"[]"])  # content after the array
        notes.append("trailing garbage")
    return body + rnd.choice([b"", b"\n"])


def _plain(value: Any, ints: bool = True) -> Any:
    """``value`` without what json bodies are not generated with: lone surrogates (a parser
    yields them as text, the generator's reference could not tell them from bytes that are
    not UTF-8) and, when ``ints``, integers past 64 bits (a document reads them as floats,
    see the oracle's notes)."""
    if isinstance(value, dict):
        return {_plain(k, ints): _plain(v, ints) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, ints) for v in value]
    if isinstance(value, str):
        return _paired(value)
    big = isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64
    return 7 if big and ints else value


def _paired(text: str) -> str:
    """``text`` with surrogate pairs as the characters they stand for, lone ones as U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# -- compression and damage -----------------------------------------------------------------


def _damage(rnd: random.Random, text: bytes, gz: bool, notes: list[str]) -> bytes:
    if not gz:
        if text and rnd.random() < 0.15:
            cut = rnd.randrange(len(text))
            notes.append(f"plain body cut at byte {cut} of {len(text)}")
            return text[:cut]
        return text
    level = rnd.choice([1, 6, 9])
    kind = rnd.choices(["none", "cut", "corrupt", "members", "padded"], [45, 25, 20, 6, 4])[0]
    if kind == "members" and len(text) > 2:
        at = rnd.randrange(1, len(text))
        body = gzip.compress(text[:at], level, mtime=0) + gzip.compress(text[at:], level, mtime=0)
        notes.append(f"gzip level {level}, two members split at decoded byte {at}")
        return body
    body = gzip.compress(text, level, mtime=0)
    notes.append(f"gzip level {level}, {len(body)} bytes")
    if kind == "padded":
        notes.append("zero padding after the member")
        return body + b"\x00" * rnd.randrange(1, 9)
    if kind == "cut":
        cut = rnd.randrange(len(body))
        notes.append(f"cut at compressed byte {cut}")
        return body[:cut]
    if kind == "corrupt":
        at = rnd.randrange(len(body))
        how = rnd.choice(["xor", "ff", "bit"])
        out = bytearray(body)
        if how == "xor":
            for i in range(at, min(len(out), at + rnd.randrange(1, 9))):
                out[i] ^= rnd.randrange(1, 256)
        elif how == "ff":
            out[at : at + 8] = b"\xff" * len(out[at : at + 8])
        else:
            out[at] ^= 1 << rnd.randrange(8)
        notes.append(f"corrupt ({how}) at compressed byte {at}")
        return bytes(out)
    return body
