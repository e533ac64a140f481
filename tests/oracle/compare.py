"""Compare what a sink holds with the SQL oracle's rows, key by key.

Values are normalised by field before comparing (a sink stores a DECIMAL as exact text, a
DynamoDB key attribute as a string): counts and window bounds as int, money as Decimal,
``avg`` within 1e-5 (SQL keeps 6 decimals, the stage 28 digits), text as text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

INTS = {"window_start", "window_end", "n", "priced", "items", "rank", "customer_id"}
DECIMALS = {"revenue", "big", "small"}
APPROX = {"mean"}


def norm(field: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if field in INTS:
        return int(Decimal(str(value)))
    if field in DECIMALS or field in APPROX:
        return Decimal(str(value))
    return value


def normalise(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {f: norm(f, row.get(f)) for f in fields}


def keyed(
    rows: list[dict[str, Any]], key: list[str], fields: list[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        n = normalise(row, fields)
        k = tuple(n[f] for f in key)
        if k in out:
            raise AssertionError(
                f"two rows for key {dict(zip(key, k, strict=True))}: {out[k]} and {n}"
            )
        out[k] = n
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for f in a:
        x, y = a[f], b.get(f)
        if f in APPROX and x is not None and y is not None:
            if abs(x - y) > Decimal("0.00001"):
                return False
        elif x != y:
            return False
    return True


def diff(
    what: str,
    expected: list[dict[str, Any]],
    actual: list[dict[str, Any]],
    key: list[str],
    fields: list[str],
) -> list[str]:
    """Lines describing every difference (empty: equal)."""
    try:
        want = keyed(expected, key, fields)
        got = keyed(actual, key, fields)
    except AssertionError as exc:
        return [f"{what}: {exc}"]
    lines = []
    for k in sorted(set(want) | set(got), key=repr):
        label = dict(zip(key, k, strict=True))
        if k not in got:
            lines.append(f"{what}: missing {label}: expected {want[k]}")
        elif k not in want:
            lines.append(f"{what}: unexpected {label}: {got[k]}")
        elif not _same(want[k], got[k]):
            lines.append(f"{what}: {label}: expected {want[k]}, got {got[k]}")
    return lines
