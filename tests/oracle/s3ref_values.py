"""The encoding half of the source oracle's reference reader (``s3ref``): a record's key
bytes and event time as a plain JSON encoder makes them, and what JSON is (RFC 8259, read
strictly), decided with the standard library only.

- The key (field ``key``): a str's UTF-8, an int's digits, ``true``/``false``, empty for
  null, Python's text for anything else.
- The event time (field ``time``): an int as is, a float truncated, ISO-8601 text as
  ``datetime.fromisoformat`` reads it (naive is UTC) in floor milliseconds; a number past a
  Kafka timestamp's signed 64 bits is poison.
- Poison: a missing key or time field, a time of any other kind, a number past the double
  range in one of these fields; for csv and json (whose values are encoded again, not sent
  as read) also a value JSON output cannot carry exactly (``exact``).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["Poison", "exact", "key_bytes", "no_surrogates", "strict", "time_ms", "walk"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Poison(Exception):
    pass


def key_bytes(value: dict[str, Any], key: str | None) -> bytes | None:
    if key is None:
        return None
    if key not in value:
        raise Poison("key missing")
    k = value[key]
    if isinstance(k, bool):
        return b"true" if k else b"false"
    if k is None:
        return b""
    if isinstance(k, float) and not math.isfinite(k):
        raise Poison("key out of range")
    if isinstance(k, str):
        return k.encode("utf-8", "surrogatepass")
    return str(k).encode()


def time_ms(value: dict[str, Any], time: str | None) -> int | None:
    if time is None:
        return None
    t = value.get(time)
    if isinstance(t, bool) or t is None:
        raise Poison("no time")
    if isinstance(t, int | float):
        if not math.isfinite(t) or not -(2**63) <= int(t) < 2**63:
            raise Poison("time past a Kafka timestamp's 64 bits")
        return int(t)
    if isinstance(t, str):
        try:
            dt = datetime.fromisoformat(t)
        except ValueError:
            raise Poison("not a time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        delta = dt - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise Poison("not a time")


def strict(text: str) -> Any:
    """json.loads as RFC 8259 reads it: no NaN/Infinity, no lone surrogates."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    value = json.loads(text, parse_constant=refuse)
    no_surrogates(value)
    return value


def walk(value: Any, leaf: Any) -> None:
    """Call ``leaf`` on every key and scalar of ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            leaf(k)
            walk(v, leaf)
    elif isinstance(value, list):
        for v in value:
            walk(v, leaf)
    else:
        leaf(value)


def _utf8(leaf: Any) -> None:
    if isinstance(leaf, str):
        leaf.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate


def no_surrogates(value: Any) -> None:
    walk(value, _utf8)


def exact(leaf: Any) -> None:
    """ValueError unless JSON output carries ``leaf`` exactly: finite numbers, integers of
    64 bits (signed or not), text without lone surrogates."""
    _utf8(leaf)
    if isinstance(leaf, float) and not math.isfinite(leaf):
        raise ValueError("a number past the double range")
    if isinstance(leaf, int) and not isinstance(leaf, bool) and not -(2**63) <= leaf < 2**64:
        raise ValueError("an integer past 64 bits")
