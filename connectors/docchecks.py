"""Checks that turn values a database refuses into a clear dead-letter reason.

``mongo_problem`` finds what MongoDB/FerretDB refuse (field names with ``.`` or a leading
``$``, NaN/Infinity, integers past 64 bits, documents over 16 MB); ``dynamo_item`` converts
floats to ``Decimal`` (boto3 refuses floats) and refuses NaN/Infinity and items over 400 KB.
Both walk the value once and never include the payload in the reason, only the field path.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson

from headrace.errors import PoisonRecord

__all__ = ["DYNAMO_MAX_ITEM", "MONGO_MAX_DOC", "dynamo_item", "mongo_problem"]

MONGO_MAX_DOC = 16 * 1024 * 1024
DYNAMO_MAX_ITEM = 400 * 1024


def mongo_problem(value: dict[str, Any], raw_size: int) -> str | None:
    """Why MongoDB would refuse ``value`` (None if it would not)."""
    if raw_size > MONGO_MAX_DOC:
        return f"document of {raw_size} bytes is over MongoDB's 16 MB limit"
    if _mongo_clean(value):
        return None
    return _mongo_walk(value, "")


#: exact types that hold nothing to check (what a JSON decoder makes, besides containers and
#: ints, which BSON holds only up to 64 bits)
_LEAVES = frozenset({str, bool, type(None)})
_INT64 = 2**63


def _mongo_clean(value: Any) -> bool:
    """True when ``value`` certainly holds nothing MongoDB refuses: the common case, checked
    without building field paths. False means "look closer" (``_mongo_walk`` says why, or
    finds nothing for a type this fast path does not know)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or "." in key or key[:1] == "$":
                return False
            if type(item) not in _LEAVES and not _mongo_clean(item):
                return False
        return True
    if kind is list:
        return all(type(item) in _LEAVES or _mongo_clean(item) for item in value)
    if kind is int:
        return bool(-_INT64 <= value < _INT64)
    if kind is float:
        return math.isfinite(value)
    return kind in _LEAVES


def _mongo_walk(value: Any, path: str) -> str | None:
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            where = f"{path}.{key}" if path else key
            if "." in key or key.startswith("$"):
                return f"field name {where!r} contains '.' or starts with '$' (MongoDB refuses it)"
            found = _mongo_walk(v, where)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _mongo_walk(v, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return f"field {path!r} is {value} (NaN/Infinity are not stored)"
    elif type(value) is int and not -_INT64 <= value < _INT64:
        return (
            f"field {path!r} is an integer past 64 bits, which MongoDB cannot store; "
            "send it as text (e.g. a cast: {field: str} step) to keep it exact"
        )
    return None


def dynamo_item(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` with every float as ``Decimal``; PoisonRecord for NaN/Inf or > 400 KB."""
    item = _to_dynamo(value, "")
    size = len(orjson.dumps(value, default=str))
    if size > DYNAMO_MAX_ITEM:
        raise PoisonRecord(f"item of about {size} bytes is over DynamoDB's 400 KB limit")
    assert isinstance(item, dict)
    return item


def _to_dynamo(value: Any, path: str) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PoisonRecord(
                f"field {path!r} is {value} (DynamoDB has no NaN/Infinity)", field=path
            )
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Decimal) and not value.is_finite():
        raise PoisonRecord(f"field {path!r} is {value} (DynamoDB has no NaN/Infinity)", field=path)
    return value
