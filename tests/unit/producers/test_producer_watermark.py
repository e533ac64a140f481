"""MySQL modes: the SQL each mode builds, and the watermark a restart resumes from (ties,
late commits, crashes mid-poll), checked against an in-memory table."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from producers.mysql_watermark import Watermark, WatermarkTracker, where_clause

T0 = datetime(2024, 1, 1)


def t(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


def test_where_clauses_per_mode() -> None:
    wm = Watermark(t(5), 7)
    assert where_clause("bulk", "`ts`", "`id`", wm) == ("", "", set())
    assert where_clause("incrementing", "", "`id`", Watermark()) == ("", "`id` ASC", set())
    assert where_clause("incrementing", "", "`id`", wm) == ("`id` > :hr_id", "`id` ASC", {"hr_id"})
    assert where_clause("timestamp", "`ts`", "", Watermark()) == (
        "`ts` < :hr_until",
        "`ts` ASC",
        {"hr_until"},
    )
    assert where_clause("timestamp", "`ts`", "", wm) == (
        "`ts` > :hr_ts AND `ts` < :hr_until",
        "`ts` ASC",
        {"hr_ts", "hr_until"},
    )
    cond, order, names = where_clause("timestamp+incrementing", "`ts`", "`id`", wm)
    assert cond == "`ts` < :hr_until AND (`ts` > :hr_ts OR (`ts` = :hr_ts AND `id` > :hr_id))"
    assert order == "`ts` ASC, `id` ASC"
    assert names == {"hr_ts", "hr_id", "hr_until"}
    with pytest.raises(ValueError):
        where_clause("cdc", "", "", wm)


# -- an in-memory table evaluated with the same semantics as the SQL above -----------------


def _select(mode: str, rows: list[tuple[datetime, int]], wm: Watermark, until: datetime):
    if mode == "incrementing":
        out = [r for r in rows if wm.id is None or r[1] > wm.id]
        return sorted(out, key=lambda r: r[1])
    if mode == "timestamp":
        out = [r for r in rows if r[0] < until and (wm.ts is None or r[0] > wm.ts)]
        return sorted(out, key=lambda r: r[0])
    out = [
        r
        for r in rows
        if r[0] < until and (wm.ts is None or r[0] > wm.ts or (r[0] == wm.ts and r[1] > wm.id))
    ]
    return sorted(out, key=lambda r: (r[0], r[1]))


def _poll(mode, rows, wm, until, *, batch=2, crash_after=None):
    """Rows sent and the stored watermark; ``crash_after`` rows: stop without finishing."""
    tracker = WatermarkTracker(mode, wm)
    sent, stored = list[Any](), wm
    result = _select(mode, rows, wm, until)
    for i in range(0, len(result), batch):
        for r in result[i : i + batch]:
            if crash_after is not None and len(sent) >= crash_after:
                return sent, stored
            tracker.see(r[0], r[1])
            sent.append(r)
        stored = tracker.safe()  # checkpointed after the batch was acknowledged
    tracker.finish()
    return sent, tracker.safe()


@pytest.mark.parametrize("mode", ["incrementing", "timestamp", "timestamp+incrementing"])
@pytest.mark.parametrize("crash_after", [1, 2, 3, 4, 5, 6, 7])
def test_crash_anywhere_then_restart_skips_nothing(mode: str, crash_after: int) -> None:
    # ties: three rows at t(1), two at t(2)
    rows = [(t(1), 1), (t(1), 2), (t(1), 3), (t(2), 4), (t(2), 5), (t(3), 6), (t(4), 7)]
    until = t(100)
    first, wm = _poll(mode, rows, Watermark(), until, crash_after=crash_after)
    second, end = _poll(mode, rows, wm, until)
    assert set(first) | set(second) == set(rows)
    repeated = set(first) & set(second)
    assert all(r not in repeated for r in first[: _safe_count(mode, first, wm)])
    assert _poll(mode, rows, end, until)[0] == []  # caught up: nothing more


def _safe_count(mode, sent, wm):
    """How many of the sent rows are covered by the stored watermark."""
    if wm.ts is None and wm.id is None:
        return 0
    if mode == "incrementing":
        return sum(1 for r in sent if r[1] <= wm.id)
    if mode == "timestamp":
        return sum(1 for r in sent if r[0] <= wm.ts)
    return sum(1 for r in sent if (r[0], r[1]) <= (wm.ts, wm.id))


def test_timestamp_mode_holds_back_an_open_tie_group() -> None:
    tr = WatermarkTracker("timestamp", Watermark())
    tr.see(t(1), None)
    tr.see(t(2), None)
    tr.see(t(2), None)
    assert tr.safe() == Watermark(t(1), None)  # more rows at t(2) may follow
    tr.finish()
    assert tr.safe() == Watermark(t(2), None)


def test_timestamp_incrementing_breaks_ties_by_id() -> None:
    rows = [(t(1), 1), (t(1), 2), (t(1), 3)]
    _, wm = _poll("timestamp+incrementing", rows, Watermark(), t(9), batch=1, crash_after=2)
    assert wm == Watermark(t(1), 2)
    assert _poll("timestamp+incrementing", rows, wm, t(9))[0] == [(t(1), 3)]


def test_late_commit_within_delay_is_read_and_beyond_it_is_not() -> None:
    now = t(1000)
    delay = timedelta(seconds=60)
    rows = [(t(100), 1), (now - timedelta(seconds=10), 2)]
    sent, wm = _poll("timestamp+incrementing", rows, Watermark(), now - delay)
    assert sent == [(t(100), 1)]  # row 2 is too recent: not read yet
    # a transaction that started earlier commits now, with an older timestamp than row 2
    rows.append((now - timedelta(seconds=30), 3))
    later = now + timedelta(seconds=120)
    sent2, _ = _poll("timestamp+incrementing", rows, wm, later - delay)
    assert sent2 == [(now - timedelta(seconds=30), 3), (now - timedelta(seconds=10), 2)]
    # without a delay, the same late commit lands behind the watermark and is missed
    rows0 = [(t(100), 1), (now - timedelta(seconds=10), 2)]
    _, wm0 = _poll("timestamp+incrementing", rows0, Watermark(), now)
    rows0.append((now - timedelta(seconds=30), 3))
    assert _poll("timestamp+incrementing", rows0, wm0, later)[0] == []


def test_incrementing_ignores_timestamps_and_bulk_has_no_position() -> None:
    tr = WatermarkTracker("incrementing", Watermark())
    tr.see(None, 10)
    assert tr.safe() == Watermark(None, 10)
    bulk = WatermarkTracker("bulk", Watermark())
    bulk.see(None, None)
    assert bulk.safe() == Watermark()


def test_state_round_trip_and_mode_change_starts_over() -> None:
    wm = Watermark(datetime(2024, 1, 1, 0, 0, 0, 123456), 42)
    state = wm.to_state("timestamp+incrementing")
    assert state == {"mode": "timestamp+incrementing", "ts": "2024-01-01T00:00:00.123456", "id": 42}
    assert Watermark.from_state(state, "timestamp+incrementing") == wm
    assert Watermark.from_state(state, "incrementing") == Watermark()
    assert Watermark.from_state(None, "timestamp") == Watermark()


@pytest.mark.parametrize("mode", ["incrementing", "timestamp", "timestamp+incrementing", "bulk"])
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_see_batch_equals_seeing_every_row(mode: str, size: int) -> None:
    # what the source calls per batch must leave the tracker where per-row calls would
    rows = [(t(1), 1), (t(1), 2), (t(1), 3), (t(2), 4), (t(2), 5), (t(3), 6), (t(4), 7)]
    start = Watermark(t(0), 0)
    one, many = WatermarkTracker(mode, start), WatermarkTracker(mode, start)
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        for ts, rid in chunk:
            one.see(ts, rid)
        many.see_batch([r[0] for r in chunk], [chunk[-1][1]])
        assert many.safe() == one.safe()
    one.finish()
    many.finish()
    assert many.safe() == one.safe()
