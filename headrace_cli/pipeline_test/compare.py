"""Comparing expected items with what a case produced, record by record.

An expected item names only the keys it checks; each is compared with the actual item's:

- ``value``, ``doc``, ``item``: equal as JSON (``true`` is not ``1``, ``2`` is ``2.0``);
  with ``subset``, only the fields the expectation lists (the actual may have more);
- ``headers``: the expected headers are there with these values (others may be too);
- ``reason``: a substring of the dead letter's ``<error class>: <message>``;
- anything else: equal.

``diff_items`` tells how a list of items differs: in order (``ordered``: a longest common
subsequence of matching items, the rest paired up to show their differences field by
field), in any order, or ``contains`` (the expected among others). Lines read like a diff:
``=`` matches, ``~`` differs (expected, actual, then each field), ``-`` expected but not
produced, ``+`` produced but not expected. Actual items are numbered from 1 in the order
they were produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from headrace_cli.pipeline_test.values import flow

__all__ = ["diff_fields", "diff_items", "same"]

_MISSING: Any = object()
_BODIES = ("value", "doc", "item")


def same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, but a boolean is only equal to a boolean."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _shown(value: Any) -> str:
    return "nothing" if value is _MISSING else flow(value)


def _mapping_diff(
    prefix: str, want: dict[str, Any], got: dict[str, Any], subset: bool
) -> list[str]:
    out: list[str] = []
    for k, w in want.items():
        g = got.get(k, _MISSING)
        if g is _MISSING:
            out.append(f"{prefix}.{k}: expected {flow(w)}, missing")
        elif isinstance(w, dict) and isinstance(g, dict) and not same(w, g):
            out += _mapping_diff(f"{prefix}.{k}", w, g, False)
        elif not same(w, g):
            out.append(f"{prefix}.{k}: expected {flow(w)}, got {flow(g)}")
    if not subset:
        out += [
            f"{prefix}.{k}: not expected, got {flow(g)}" for k, g in got.items() if k not in want
        ]
    return out


def diff_fields(expected: dict[str, Any], actual: dict[str, Any], subset: bool) -> list[str]:
    """How ``actual`` differs from ``expected`` on the keys it names (module doc); empty
    when it matches."""
    out: list[str] = []
    for name, want in expected.items():
        got = actual.get(name, _MISSING)
        if name == "reason":
            text = f"{actual.get('error')}: {got}"
            if got is _MISSING or str(want) not in text:
                out.append(f"reason: {want!r} is not in {_shown(got)}")
        elif name in _BODIES and isinstance(want, dict) and isinstance(got, dict):
            out += _mapping_diff(name, want, got, subset)
        elif name == "headers" and isinstance(want, dict) and isinstance(got, dict):
            out += _mapping_diff(name, want, got, True)
        elif got is _MISSING or not same(want, got):
            out.append(f"{name}: expected {flow(want)}, got {_shown(got)}")
    return out


Shown = Callable[[dict[str, Any]], dict[str, Any]]


def _lcs(
    expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]], subset: bool
) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of matching items."""
    n, m = len(expected), len(actual)
    ok = [[not diff_fields(e, a, subset) for a in actual] for e in expected]
    length = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if ok[i][j]:
                length[i][j] = length[i + 1][j + 1] + 1
            else:
                length[i][j] = max(length[i + 1][j], length[i][j + 1])
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if ok[i][j] and length[i][j] == length[i + 1][j + 1] + 1:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif length[i + 1][j] >= length[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _changed(e: dict[str, Any], a: dict[str, Any], j: int, shown: Shown, subset: bool) -> list[str]:
    return [
        f"~ #{j + 1} differs:",
        f"    expected {flow(e)}",
        f"    actual   {flow(shown(a))}",
        *[f"    {d}" for d in diff_fields(e, a, subset)],
    ]


def _ordered(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    shown: Shown,
    subset: bool,
) -> list[str]:
    pairs = _lcs(expected, actual, subset)
    lines: list[str] = []
    i = j = 0
    for pi, pj in [*pairs, (len(expected), len(actual))]:
        gone, extra = list(range(i, pi)), list(range(j, pj))
        for k in range(min(len(gone), len(extra))):  # side by side: show what differs
            lines += _changed(expected[gone[k]], actual[extra[k]], extra[k], shown, subset)
        lines += [f"- expected, not produced: {flow(expected[g])}" for g in gone[len(extra) :]]
        lines += [
            f"+ #{x + 1} produced, not expected: {flow(shown(actual[x]))}"
            for x in extra[len(gone) :]
        ]
        if pi < len(expected):
            lines.append(f"= #{pj + 1} {flow(shown(actual[pj]))}")
        i, j = pi + 1, pj + 1
    return lines


def _unordered(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    shown: Shown,
    subset: bool,
    contains: bool,
) -> list[str]:
    free = list(range(len(actual)))
    matched: dict[int, int] = {}
    for i, e in enumerate(expected):
        for j in free:
            if not diff_fields(e, actual[j], subset):
                matched[i] = j
                free.remove(j)
                break
    lines = [f"= #{matched[i] + 1} {flow(shown(actual[matched[i]]))}" for i in sorted(matched)]
    for i, e in enumerate(expected):
        if i in matched:
            continue
        if free:  # the closest one left, to show what differs
            j = min(free, key=lambda k: len(diff_fields(e, actual[k], subset)))
            lines += _changed(e, actual[j], j, shown, subset)
            if not contains:
                free.remove(j)
        else:
            lines.append(f"- expected, not produced: {flow(e)}")
    if not contains:
        lines += [f"+ #{j + 1} produced, not expected: {flow(shown(actual[j]))}" for j in free]
    return lines


def diff_items(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    *,
    shown: Shown,
    subset: bool = False,
    ordered: bool = True,
    contains: bool = False,
) -> list[str] | None:
    """None when ``actual`` is what ``expected`` asks (module doc), else the diff lines.
    ``shown`` picks the keys of an actual item the lines show."""
    if contains:
        lines = _unordered(expected, actual, shown, subset, contains=True)
    elif ordered:
        lines = _ordered(expected, actual, shown, subset)
    else:
        lines = _unordered(expected, actual, shown, subset, contains=False)
    if all(line.startswith("=") for line in lines):
        return None
    return lines
