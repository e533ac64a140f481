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
they were produced. Matches far from a difference are counted, not listed, and after 25
differences the rest are counted too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from headrace_cli.pipeline_test.values import flow

__all__ = ["diff_fields", "diff_items", "matches", "same"]

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


def _mapping_matches(want: dict[str, Any], got: dict[str, Any], subset: bool) -> bool:
    if not subset and want.keys() != got.keys():
        return False
    return all(k in got and same(w, got[k]) for k, w in want.items())


def matches(expected: dict[str, Any], actual: dict[str, Any], subset: bool) -> bool:
    """Whether ``diff_fields(expected, actual, subset)`` is empty, without writing it."""
    for name, want in expected.items():
        got = actual.get(name, _MISSING)
        if name == "reason":
            if got is _MISSING or str(want) not in f"{actual.get('error')}: {got}":
                return False
        elif name in _BODIES and isinstance(want, dict) and isinstance(got, dict):
            if not _mapping_matches(want, got, subset):
                return False
        elif name == "headers" and isinstance(want, dict) and isinstance(got, dict):
            if not _mapping_matches(want, got, True):
                return False
        elif got is _MISSING or not same(want, got):
            return False
    return True


Shown = Callable[[dict[str, Any]], dict[str, Any]]


_LCS_CELLS = 250_000
"""Past this many (expected x actual) comparisons the alignment is greedy (``_greedy``)."""
_WINDOW = 50


def _lcs(
    expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]], subset: bool
) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of matching items (after the common
    prefix and suffix; a greedy alignment when the rest is too large for the table)."""
    n, m = len(expected), len(actual)
    head = 0
    while head < min(n, m) and matches(expected[head], actual[head], subset):
        head += 1
    tail = 0
    while tail < min(n, m) - head and matches(expected[n - 1 - tail], actual[m - 1 - tail], subset):
        tail += 1
    pairs = [(i, i) for i in range(head)]
    mid_e, mid_a = expected[head : n - tail], actual[head : m - tail]
    if len(mid_e) * len(mid_a) > _LCS_CELLS:
        inner = _greedy(mid_e, mid_a, subset)
    else:
        inner = _lcs_table(mid_e, mid_a, subset)
    pairs += [(head + i, head + j) for i, j in inner]
    pairs += [(n - tail + k, m - tail + k) for k in range(tail)]
    return pairs


def _greedy(
    expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]], subset: bool
) -> list[tuple[int, int]]:
    """Matching pairs found walking both lists, looking up to ``_WINDOW`` items ahead on
    either side for the next match (records inserted or lost show as such)."""
    pairs: list[tuple[int, int]] = []
    i = j = 0
    n, m = len(expected), len(actual)
    while i < n and j < m:
        if matches(expected[i], actual[j], subset):
            pairs.append((i, j))
            i, j = i + 1, j + 1
            continue
        ahead_a = next(
            (
                k
                for k in range(j + 1, min(m, j + _WINDOW))
                if matches(expected[i], actual[k], subset)
            ),
            None,
        )
        ahead_e = next(
            (
                k
                for k in range(i + 1, min(n, i + _WINDOW))
                if matches(expected[k], actual[j], subset)
            ),
            None,
        )
        if ahead_a is not None and (ahead_e is None or ahead_a - j <= ahead_e - i):
            j = ahead_a
        elif ahead_e is not None:
            i = ahead_e
        else:
            i, j = i + 1, j + 1
    return pairs


def _lcs_table(
    expected: Sequence[dict[str, Any]], actual: Sequence[dict[str, Any]], subset: bool
) -> list[tuple[int, int]]:
    n, m = len(expected), len(actual)
    ok = [[matches(e, a, subset) for a in actual] for e in expected]
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


Entry = tuple[str, Callable[[], list[str]]]
"""One diff entry: its mark (``=``, ``~``, ``-``, ``+``) and how to write its lines (only
the entries shown are written)."""

_SHOWN_DIFFERENCES = 25
_CONTEXT = 2


def _changed(e: dict[str, Any], a: dict[str, Any], j: int, shown: Shown, subset: bool) -> Entry:
    return "~", lambda: [
        f"~ #{j + 1} differs:",
        f"    expected {flow(e)}",
        f"    actual   {flow(shown(a))}",
        *[f"    {d}" for d in diff_fields(e, a, subset)],
    ]


def _missing(e: dict[str, Any]) -> Entry:
    return "-", lambda: [f"- expected, not produced: {flow(e)}"]


def _extra(a: dict[str, Any], j: int, shown: Shown) -> Entry:
    return "+", lambda: [f"+ #{j + 1} produced, not expected: {flow(shown(a))}"]


def _same(a: dict[str, Any], j: int, shown: Shown) -> Entry:
    return "=", lambda: [f"= #{j + 1} {flow(shown(a))}"]


def _ordered(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    shown: Shown,
    subset: bool,
) -> list[Entry]:
    pairs = _lcs(expected, actual, subset)
    entries: list[Entry] = []
    i = j = 0
    for pi, pj in [*pairs, (len(expected), len(actual))]:
        gone, extra = list(range(i, pi)), list(range(j, pj))
        for k in range(min(len(gone), len(extra))):  # side by side: show what differs
            entries.append(_changed(expected[gone[k]], actual[extra[k]], extra[k], shown, subset))
        entries += [_missing(expected[g]) for g in gone[len(extra) :]]
        entries += [_extra(actual[x], x, shown) for x in extra[len(gone) :]]
        if pi < len(expected):
            entries.append(_same(actual[pj], pj, shown))
        i, j = pi + 1, pj + 1
    return entries


def _unordered(
    expected: Sequence[dict[str, Any]],
    actual: Sequence[dict[str, Any]],
    shown: Shown,
    subset: bool,
    contains: bool,
) -> list[Entry]:
    free = list(range(len(actual)))
    matched: dict[int, int] = {}
    for i, e in enumerate(expected):
        for j in free:
            if matches(e, actual[j], subset):
                matched[i] = j
                free.remove(j)
                break
    entries = [_same(actual[matched[i]], matched[i], shown) for i in sorted(matched)]
    for i, e in enumerate(expected):
        if i in matched:
            continue
        if free:  # the closest one left, to show what differs
            j = min(free, key=lambda k: len(diff_fields(e, actual[k], subset)))
            entries.append(_changed(e, actual[j], j, shown, subset))
            if not contains:
                free.remove(j)
        else:
            entries.append(_missing(e))
    if not contains:
        entries += [_extra(actual[j], j, shown) for j in free]
    return entries


def _written(entries: list[Entry]) -> list[str]:
    """The lines of ``entries``: runs of matches beyond ``_CONTEXT`` around a difference
    are one line saying how many, and past ``_SHOWN_DIFFERENCES`` differences one line says
    how many more there are."""
    near: set[int] = set()
    for n, (mark, _lines) in enumerate(entries):
        if mark != "=":
            near.update(range(n - _CONTEXT, n + _CONTEXT + 1))
    lines: list[str] = []
    skipped = differences = 0
    for n, (mark, write) in enumerate(entries):
        if mark == "=" and n not in near:
            skipped += 1
            continue
        if skipped:
            lines.append(f"  ({skipped} matching)")
            skipped = 0
        if mark != "=":
            differences += 1
            if differences > _SHOWN_DIFFERENCES:
                continue
        lines += write()
    if skipped:
        lines.append(f"  ({skipped} matching)")
    if differences > _SHOWN_DIFFERENCES:
        lines.append(f"... and {differences - _SHOWN_DIFFERENCES} more differences")
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
        entries = _unordered(expected, actual, shown, subset, contains=True)
    elif ordered:
        entries = _ordered(expected, actual, shown, subset)
    else:
        entries = _unordered(expected, actual, shown, subset, contains=False)
    if all(mark == "=" for mark, _write in entries):
        return None
    return _written(entries)
