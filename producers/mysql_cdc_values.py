"""Column values of the MySQL CDC source, typed from the table's schema, as JSON values.

The snapshot (PyMySQL rows) and the binlog (``mysql-replication`` row images) give different
Python values for one column; both go through the same converter, chosen from the column's
``information_schema`` type, so a row reads the same whichever way it came:

- DECIMAL/NUMERIC: exact text (``"12.30"``), as the polling source writes JSON.
- integers (signed and unsigned, up to BIGINT UNSIGNED), YEAR: int; BIT: int.
- DOUBLE: float. FLOAT: the shortest decimal that reads back as the same single-precision
  value (0.1, 0.33333334): the binlog gives the float32 value and the snapshot selects the
  column ``CAST(... AS DOUBLE)`` (the text protocol would round it to 6 digits).
- DATETIME: ISO-8601 text without an offset (the wall-clock value as stored: DATETIME has no
  time zone). TIMESTAMP: ISO-8601 UTC text ending in ``Z`` (the session and the binlog both
  give UTC). DATE: ``YYYY-MM-DD``; TIME: ``[-]HH:MM:SS[.ffffff]``. Zero dates: None.
- CHAR/VARCHAR/TEXT: text; BINARY/VARBINARY/BLOB: base64 text (BINARY(n) padded with zero
  bytes to n, as stored: the binlog drops the padding).
- ENUM: its text; SET: its members comma-joined in definition order (as ``SELECT`` shows it).
- JSON: the parsed value.
- NULL: None.

A value a converter cannot take raises ``ValueError`` naming the column; the source sends the
row to the dead-letter topic.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

__all__ = [
    "Converter",
    "binlog_converters",
    "column_converter",
    "convert_row",
    "fix_binlog_times",
    "row_converter",
    "time_columns",
]

Converter = Callable[[Any], Any]

_INTS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_TEXTS = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum"}
_BINARIES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry"}
_SET_MEMBER = re.compile(r"'((?:[^']|'')*)'")


def _decimal(v: Any) -> Any:
    if isinstance(v, Decimal):
        return format(v, "f")  # never 1E-12: the binlog's Decimal of -0.000000000001... is one
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, str):
        Decimal(v)  # ValueError-like InvalidOperation when it is not a number
        return v
    raise ValueError(f"{type(v).__name__} {v!r} is not a DECIMAL")


def _int(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int):
        return int(v)
    return v


def _bit(v: Any) -> Any:
    """BIT as its number: the snapshot's drivers give bytes (big-endian), mysql-replication
    gives the bits as a text of 0s and 1s ("00000101" for b'101')."""
    if isinstance(v, bytes):
        return int.from_bytes(v, "big")
    if isinstance(v, str):
        return int(v, 2)
    return int(v)


def _float(v: Any) -> Any:
    return float(v)


def _float32(v: Any) -> Any:
    """A FLOAT's single-precision value as the shortest decimal that reads back as it."""
    exact = struct.unpack("<f", struct.pack("<f", float(v)))[0]
    for digits in range(6, 10):
        shortest = float(f"{exact:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shortest))[0] == exact:
            return shortest
    return exact


def _datetime(v: Any) -> Any:
    if isinstance(v, datetime):
        # the drivers give naive datetimes: no copy without a zone (~0.8 us a value)
        return (v if v.tzinfo is None else v.replace(tzinfo=None)).isoformat()
    if isinstance(v, str) and v.startswith("0000-00-00"):
        return None  # a zero date
    raise ValueError(f"{type(v).__name__} {v!r} is not a DATETIME")


def _timestamp(v: Any) -> Any:
    text = _datetime(v)
    return None if text is None else text + "Z"


def _date(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, str) and v.startswith("0000-00-00"):
        return None
    raise ValueError(f"{type(v).__name__} {v!r} is not a DATE")


def time_columns(converters: Mapping[str, Converter]) -> list[str]:
    """The TIME columns among ``converters`` (what ``fix_binlog_times`` looks at)."""
    return [name for name, conv in converters.items() if conv is _time]


def fix_binlog_times(image: dict[str, Any], columns: list[str]) -> None:
    """Correct, in place, the negative TIME values with a fraction that ``mysql-replication``
    (1.0.x) decodes wrong: MySQL stores a negative TIME2 as the two's complement of its whole
    value, the library negates its integer part and its fraction apart, so -00:00:00.001
    came out as -00:00:00.999 and -00:00:01.25 as -00:00:01.75. For |value| = I + R (whole
    seconds I, fraction R > 0) the stored value is -(I + 1 - R). Snapshot values are right
    and never pass here."""
    for name in columns:  # ``time_columns``: computed once per row event, not per row
        v = image.get(name)
        if isinstance(v, timedelta) and v < timedelta(0):
            magnitude = -v
            if magnitude.microseconds:
                whole = magnitude.days * 86_400 + magnitude.seconds
                image[name] = -timedelta(seconds=whole + 1, microseconds=-magnitude.microseconds)


def _time(v: Any) -> Any:
    if not isinstance(v, timedelta):
        raise ValueError(f"{type(v).__name__} {v!r} is not a TIME")
    sign = "-" if v < timedelta(0) else ""
    us = abs(v) // timedelta(microseconds=1)
    secs, frac = divmod(us, 1_000_000)
    text = f"{sign}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return f"{text}.{frac:06d}" if frac else text


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else str(v)


def _binary(v: Any) -> Any:
    raw = v if isinstance(v, bytes) else str(v).encode("latin-1")
    return base64.b64encode(raw).decode()


def _binary_of(length: int) -> Converter:
    """BINARY(length): padded with zero bytes to its length, as stored and selected."""

    def convert(v: Any) -> Any:
        raw = v if isinstance(v, bytes) else str(v).encode("latin-1")
        return base64.b64encode(raw.ljust(length, b"\x00")).decode()

    return convert


def _plain(v: Any) -> Any:
    """JSON from the binlog's decoder: bytes keys and strings become text."""
    if isinstance(v, dict):
        return {_text(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, bytes):
        return v.decode()
    return v


def _json(v: Any) -> Any:
    if isinstance(v, str | bytes):
        return orjson.loads(v)
    return _plain(v)


def _set_of(column_type: str) -> Converter:
    return _set_in([m.replace("''", "'") for m in _SET_MEMBER.findall(column_type)])


def column_converter(data_type: str, column_type: str = "") -> Converter:
    """The converter of a column whose ``information_schema.COLUMNS`` ``DATA_TYPE`` is
    ``data_type`` (``COLUMN_TYPE``: e.g. ``set('a','b')``, needed for SET)."""
    t = data_type.lower()
    if t in ("decimal", "numeric"):
        return _decimal
    if t in _INTS:
        return _int
    if t == "bit":
        return _bit
    if t == "float":
        return _float32
    if t in ("double", "real"):
        return _float
    if t == "binary":
        found = re.search(r"\((\d+)\)", column_type)
        return _binary_of(int(found.group(1))) if found else _binary
    if t == "datetime":
        return _datetime
    if t == "timestamp":
        return _timestamp
    if t == "date":
        return _date
    if t == "time":
        return _time
    if t in _TEXTS:
        return _text
    if t in _BINARIES:
        return _binary
    if t == "set":
        return _set_of(column_type)
    if t == "json":
        return _json
    return _plain


def _set_in(members: list[str]) -> Converter:
    def convert(v: Any) -> Any:
        if isinstance(v, set | frozenset | list | tuple):
            chosen = {_text(x) for x in v}
            return ",".join(m for m in members if m in chosen)
        return _text(v)

    return convert


def binlog_converter(column: Any) -> Converter:
    """The converter of a column as a binlog table map describes it (``mysql-replication``'s
    ``Column``: its type code, and with ``binlog_row_metadata=FULL`` its name, character set
    and SET members): the same families as ``column_converter``, except that MariaDB's JSON
    (a LONGTEXT) reads as text."""
    from pymysqlreplication.constants import FIELD_TYPE as F

    t = column.type
    if t in (F.NEWDECIMAL, F.DECIMAL):
        return _decimal
    if t in (F.TINY, F.SHORT, F.INT24, F.LONG, F.LONGLONG, F.YEAR):
        return _int
    if t == F.BIT:
        return _bit
    if t == F.FLOAT:
        return _float32
    if t == F.DOUBLE:
        return _float
    if t in (F.DATETIME, F.DATETIME2):
        return _datetime
    if t in (F.TIMESTAMP, F.TIMESTAMP2):
        return _timestamp
    if t in (F.DATE, F.NEWDATE):
        return _date
    if t in (F.TIME, F.TIME2):
        return _time
    if t == F.ENUM:
        return _text
    if t == F.SET:
        return _set_in([_text(m) for m in column.set_values or []])
    if t == F.JSON:
        return _json
    if t == F.GEOMETRY:
        return _binary
    if t in (F.VARCHAR, F.VAR_STRING, F.STRING, F.BLOB, F.TINY_BLOB, F.MEDIUM_BLOB, F.LONG_BLOB):
        binary = str(getattr(column, "character_set_name", "") or "").lower() == "binary"
        if binary and t == F.STRING and getattr(column, "max_length", None):
            return _binary_of(int(column.max_length))  # BINARY(n)
        return _binary if binary else _text
    return _plain


def binlog_converters(
    columns: list[Any], catalog: Mapping[str, Converter]
) -> dict[str, Converter] | None:
    """Converters for a row event's columns from its table map, for a row whose columns are
    not the table's current ones (a source behind by several schema changes). A column the
    catalog has with the same family keeps the catalog's converter (so MariaDB's JSON stays
    parsed). None when the table map carries no column names or character sets (the server
    is not on ``binlog_row_metadata=FULL``): then the row cannot be typed safely."""
    out: dict[str, Converter] = {}
    for column in columns:
        name = getattr(column, "name", None)
        if not name or str(name).startswith("UNKNOWN_COL"):
            return None
        theirs = binlog_converter(column)
        if theirs is _text and getattr(column, "character_set_name", None) is None:
            return None  # no character set: this table map has no FULL metadata
        ours = catalog.get(str(name))
        same = ours is not None and (ours is theirs or (ours is _json and theirs is _text))
        out[str(name)] = ours if same and ours is not None else theirs
    return out


def convert_row(row: Mapping[str, Any], converters: Mapping[str, Converter]) -> dict[str, Any]:
    """``row`` with every value converted (None stays None); ValueError naming the column
    (and its value) that could not be converted, or a column the schema does not have."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        conv = converters.get(name)
        if conv is None:
            raise ValueError(
                f"column {name!r} is not in the table's schema ({', '.join(converters)})"
            )
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = conv(value)
        except (ValueError, TypeError, ArithmeticError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"column {name!r}: value {value!r:.80} cannot be encoded: {exc}"
            ) from None
    return out


def row_converter(
    columns: Sequence[str], converters: Mapping[str, Converter]
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function converting one row given as a sequence in ``columns`` order (as a driver
    fetches it) to what ``convert_row(dict(zip(columns, row)), converters)`` gives: the same
    dict, made in one compiled expression (no intermediate dict, no per-column loop: the
    snapshot's hot path). Where ``convert_row`` raises ValueError this raises an exception
    too, not necessarily a ValueError naming the column: call ``convert_row`` for that.
    KeyError at once when a column has no converter."""
    convs = [converters[c] for c in columns]
    n = len(columns)
    names = ", ".join(f"v{i}" for i in range(n)) + ("," if n == 1 else "")
    items = ", ".join(f"k{i}: None if v{i} is None else c{i}(v{i})" for i in range(n))
    # only generated identifiers in the code: the names and converters are bound in `scope`
    code = f"def convert(row):\n    {names} = row\n    return {{{items}}}\n"
    scope: dict[str, Any] = {f"k{i}": c for i, c in enumerate(columns)}
    scope.update({f"c{i}": c for i, c in enumerate(convs)})
    exec(code, scope)  # noqa: S102 - generated from indexes only, see above
    convert: Callable[[Sequence[Any]], dict[str, Any]] = scope["convert"]
    return convert
