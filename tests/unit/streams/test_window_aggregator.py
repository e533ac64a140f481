"""WindowAggregator on simulated event time: boundaries, grace, late data, hopping, having."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from headrace.config import Aggregate
from headrace.errors import PoisonRecord
from streams.operators.window import WindowAggregator, window_starts


def agg(
    window: dict[str, Any], measures: dict[str, str] | None = None, **kw: Any
) -> WindowAggregator:
    spec = Aggregate.model_validate(
        {"group_by": ["c"], "window": window, "measures": measures or {"n": "count()"}, **kw}
    )
    return WindowAggregator(spec)


def rows(results: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r.value["c"], r.value["window_start"], r.value["window_end"], r.value["n"])
        for r in results
    ]


def test_window_starts_tumbling_and_hopping() -> None:
    assert window_starts(0, 10, 10) == [0]
    assert window_starts(9, 10, 10) == [0]
    assert window_starts(10, 10, 10) == [10]
    assert window_starts(25, 10, 5) == [20, 25]
    assert window_starts(24, 10, 5) == [15, 20]
    assert window_starts(7, 30, 10) == [-20, -10, 0]


def test_tumbling_boundaries_end_is_exclusive() -> None:
    a = agg({"type": "tumbling", "size": "10s"})
    for ts in (0, 9_999, 10_000):
        assert a.add({"c": "x"}, ts) is None
    # watermark 10_000 >= end 10_000 + grace 0: first window closes
    assert rows(a.close_due()) == [("x", 0, 10_000, 2)]
    assert a.close_due() == []  # emitted once
    assert rows(a.close_due(20_000)) == [("x", 10_000, 20_000, 1)]
    assert a.state_size == 0


def test_grace_keeps_window_open_and_accepts_late_within_grace() -> None:
    a = agg({"type": "tumbling", "size": "10s", "grace": "2s"})
    a.add({"c": "x"}, 5_000)
    a.add({"c": "x"}, 11_000)
    assert a.close_due() == []  # 11_000 < 10_000 + 2_000
    assert a.add({"c": "x"}, 9_000) is None  # late but within grace: counted
    a.add({"c": "y"}, 12_000)  # watermark reaches end + grace
    assert rows(a.close_due()) == [("x", 0, 10_000, 2)]


def test_late_beyond_grace_reports_lateness_and_changes_nothing() -> None:
    a = agg({"type": "tumbling", "size": "10s", "grace": "2s"})
    a.add({"c": "x"}, 15_000)
    late = a.add({"c": "x"}, 1_000)
    assert late is not None
    assert (late.timestamp_ms, late.watermark_ms, late.lateness_ms) == (1_000, 15_000, 3_000)
    assert "3000 ms past" in late.message()
    assert rows(a.close_due(30_000)) == [("x", 10_000, 20_000, 1)]


def test_late_is_judged_per_record_not_per_batch() -> None:
    # no close_due between the adds: the window is logically closed all the same
    a = agg({"type": "tumbling", "size": "10s"})
    a.add({"c": "x"}, 1_000)
    a.add({"c": "x"}, 10_000)
    assert a.add({"c": "x"}, 2_000) is not None
    assert rows(a.close_due()) == [("x", 0, 10_000, 1)]


def test_hopping_overlap_counts_record_in_every_window() -> None:
    a = agg({"type": "hopping", "size": "10s", "step": "5s"})
    a.add({"c": "x"}, 7_000)  # windows [0,10) and [5,15)
    a.add({"c": "x"}, 12_000)  # windows [5,15) and [10,20)
    out = rows(a.close_due(100_000))
    assert out == [("x", 0, 10_000, 1), ("x", 5_000, 15_000, 2), ("x", 10_000, 20_000, 1)]


def test_hopping_partially_late_counts_in_open_windows_only() -> None:
    a = agg({"type": "hopping", "size": "10s", "step": "5s"})
    a.add({"c": "x"}, 10_000)  # closes [0,10)
    assert a.add({"c": "x"}, 7_000) is None  # [0,10) closed, [5,15) open
    assert a.partially_late == 1
    assert rows(a.close_due(100_000)) == [
        ("x", 5_000, 15_000, 2),
        ("x", 10_000, 20_000, 1),
    ]


def test_measures_sql_semantics_nulls_and_exact_decimals() -> None:
    a = agg(
        {"type": "tumbling", "size": "1m"},
        {
            "n": "count()",
            "nx": "count(x)",
            "s": "sum(x)",
            "lo": "min(x)",
            "hi": "max(x)",
            "mean": "avg(x)",
            "d": "count_distinct(x)",
        },
    )
    for x in (Decimal("0.1"), Decimal("0.2"), None, Decimal("0.2")):
        a.add({"c": "x", "x": x}, 0)
    a.add({"c": "nulls", "x": None}, 0)
    out = {r.value["c"]: r.value for r in a.close_due(60_000)}
    xs = out["x"]
    assert (xs["n"], xs["nx"], xs["s"], xs["lo"], xs["hi"], xs["d"]) == (
        4,
        3,
        Decimal("0.5"),
        Decimal("0.1"),
        Decimal("0.2"),
        2,
    )
    assert xs["mean"] == Decimal("0.5") / 3
    nulls = out["nulls"]
    assert (nulls["n"], nulls["nx"], nulls["s"], nulls["lo"], nulls["mean"], nulls["d"]) == (
        1,
        0,
        None,
        None,
        None,
        0,
    )


def test_having_filters_output_but_state_is_still_dropped() -> None:
    a = agg({"type": "tumbling", "size": "10s"}, {"n": "count()"}, having="n > 1")
    a.add({"c": "one"}, 0)
    a.add({"c": "two"}, 0)
    a.add({"c": "two"}, 1)
    assert rows(a.close_due(10_000)) == [("two", 0, 10_000, 2)]
    assert a.state_size == 0


def test_failing_measure_is_poison_and_leaves_state_unchanged() -> None:
    a = agg({"type": "tumbling", "size": "10s"}, {"n": "count()", "s": "sum(x * 2)"})
    a.add({"c": "k", "x": 1}, 0)
    with pytest.raises(PoisonRecord):
        a.add({"c": "k", "x": "text"}, 0)
    [r] = a.close_due(10_000)
    assert (r.value["n"], r.value["s"]) == (1, 2)


def test_drain_touched_reports_updates_and_removals_for_table_mirroring() -> None:
    a = agg({"type": "tumbling", "size": "10s"})
    a.add({"c": "k"}, 0)
    a.add({"c": "k"}, 10_000)
    touched, removed = a.drain_touched()
    assert touched == {(("k",), 0), (("k",), 10_000)} and removed == set()
    a.close_due()
    touched, removed = a.drain_touched()
    assert touched == set() and removed == {(("k",), 0)}


def test_running_updates_for_emit_updates() -> None:
    a = agg({"type": "tumbling", "size": "10s"}, emit="updates")
    a.add({"c": "k"}, 1)
    a.add({"c": "k"}, 2)
    touched, _ = a.drain_touched()
    [r] = a.running(touched)
    assert (r.final, r.value["n"]) == (False, 2)


def test_restored_state_continues_and_does_not_reemit() -> None:
    a = agg({"type": "tumbling", "size": "10s"})
    a.add({"c": "k"}, 1)
    a.add({"c": "k"}, 10_500)
    assert len(a.close_due()) == 1
    b = agg({"type": "tumbling", "size": "10s"})
    b.windows, b.watermark_ms = dict(a.windows), a.watermark_ms  # as restored from a table
    assert b.add({"c": "k"}, 2) is not None  # replayed record of the emitted window: late
    b.add({"c": "k"}, 11_000)
    assert rows(b.close_due(20_000)) == [("k", 10_000, 20_000, 2)]


def test_decimal_text_from_json_is_summed_exactly_and_bad_text_is_poison() -> None:
    a = agg(
        {"type": "tumbling", "size": "10s"},
        {"s": "sum(t)", "hi": "max(t)", "mean": "avg(t)", "n": "count()"},
    )
    for t in ("9.50", "10.25", "0.1"):
        a.add({"c": "k", "t": t}, 0)
    with pytest.raises(PoisonRecord, match="'abc' is not a number"):
        a.add({"c": "k", "t": "abc"}, 0)
    [r] = a.close_due(10_000)
    assert (r.value["s"], r.value["hi"], r.value["mean"]) == (
        Decimal("19.85"),
        Decimal("10.25"),
        Decimal("19.85") / 3,
    )
