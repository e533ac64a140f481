"""Comparing items and writing values: what matches, and how a difference is shown."""

from __future__ import annotations

from typing import Any

import pytest

from headrace_cli.pipeline_test.compare import diff_fields, diff_items, same
from headrace_cli.pipeline_test.values import (
    duration_view,
    encode_spec_key,
    json_form,
    key_view,
    time_view,
)


def _all(item: dict[str, Any]) -> dict[str, Any]:
    return item


def test_json_equality_tells_booleans_from_numbers() -> None:
    assert same(2, 2.0)
    assert not same(True, 1)
    assert not same({"a": 1}, {"a": True})
    assert same({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not same("1", 1)


def test_a_value_is_exact_unless_subset() -> None:
    actual = {"value": {"a": 1, "b": 2}}
    assert diff_fields({"value": {"a": 1}}, actual, subset=True) == []
    assert diff_fields({"value": {"a": 1}}, actual, subset=False) == [
        "value.b: not expected, got 2"
    ]
    assert diff_fields({"value": {"a": 2, "c": 3}}, actual, subset=True) == [
        "value.a: expected 2, got 1",
        "value.c: expected 3, missing",
    ]


def test_a_reason_is_a_substring_of_class_and_message() -> None:
    letter = {"error": "PoisonRecord", "reason": "late record: event time 5"}
    assert diff_fields({"reason": "late record"}, letter, subset=False) == []
    assert diff_fields({"reason": "PoisonRecord: late"}, letter, subset=False) == []
    assert diff_fields({"reason": "early"}, letter, subset=False) == [
        "reason: 'early' is not in 'late record: event time 5'"
    ]


def test_headers_expected_may_be_among_others() -> None:
    actual = {"headers": {"a": "1", "b": "2"}}
    assert diff_fields({"headers": {"a": "1"}}, actual, subset=False) == []


def test_an_inserted_record_is_shown_as_one_not_as_a_cascade() -> None:
    expected = [{"value": {"n": 1}}, {"value": {"n": 3}}]
    actual = [{"value": {"n": 1}}, {"value": {"n": 2}}, {"value": {"n": 3}}]
    lines = diff_items(expected, actual, shown=_all)
    assert lines == [
        "= #1 {value: {n: 1}}",
        "+ #2 produced, not expected: {value: {n: 2}}",
        "= #3 {value: {n: 3}}",
    ]


def test_a_changed_record_shows_each_field() -> None:
    lines = diff_items(
        [{"key": "a", "value": {"n": 1}}], [{"key": "a", "value": {"n": 2}}], shown=_all
    )
    assert lines == [
        "~ #1 differs:",
        "    expected {key: a, value: {n: 1}}",
        "    actual   {key: a, value: {n: 2}}",
        "    value.n: expected 1, got 2",
    ]


def test_order_matters_unless_told_otherwise() -> None:
    expected = [{"value": {"n": 2}}, {"value": {"n": 1}}]
    actual = [{"value": {"n": 1}}, {"value": {"n": 2}}]
    assert diff_items(expected, actual, shown=_all) is not None
    assert diff_items(expected, actual, shown=_all, ordered=False) is None


def test_contains_allows_others_and_shows_the_closest_for_a_missing_one() -> None:
    actual = [{"value": {"n": 1, "m": 1}}, {"value": {"n": 2, "m": 2}}]
    assert diff_items([{"value": {"n": 2}}], actual, shown=_all, contains=True, subset=True) is None
    lines = diff_items([{"value": {"n": 2, "m": 3}}], actual, shown=_all, contains=True)
    assert lines is not None
    assert "~ #2 differs:" in lines
    assert "    value.m: expected 3, got 2" in lines


def test_a_missing_record_is_shown() -> None:
    assert diff_items([{"value": {"n": 1}}], [], shown=_all) == [
        "- expected, not produced: {value: {n: 1}}"
    ]


@pytest.mark.parametrize(
    "key", [None, "c1", 7, ["c1", "gold", 1714564800000], [7, None], "[not json"]
)
def test_a_key_reads_back_as_it_is_written(key: Any) -> None:
    data = encode_spec_key(key)
    assert encode_spec_key(key_view(data)) == data


def test_times_and_durations_are_written_as_people_write_them() -> None:
    assert time_view(1714564800000) == "2024-05-01T12:00:00Z"
    assert time_view(1714565099999) == "2024-05-01T12:04:59.999Z"
    assert [duration_view(ms) for ms in (0, 500, 1500, 245_000, 600_000, 1_234_567)] == [
        "0s",
        "500ms",
        "1.5s",
        "245s",
        "10m",
        "1234.567s",
    ]


def test_yaml_values_compare_in_their_json_form() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    assert json_form({"t": datetime(2024, 5, 1, 12, tzinfo=UTC)}) == {
        "t": "2024-05-01T12:00:00+00:00"
    }
    assert json_form(Decimal("9.50")) == "9.50"  # exact decimals are text in the topic


def test_a_long_list_with_one_record_lost_shows_that_record_and_counts_the_rest() -> None:
    expected = [{"value": {"n": i}} for i in range(1000)]
    # both ends differ too: the middle is past the LCS table's size, aligned greedily
    actual = [{"value": {"n": -1}}, *expected[1:400], *expected[401:999], {"value": {"n": -2}}]
    lines = diff_items(expected, actual, shown=_all)
    assert lines is not None
    assert "- expected, not produced: {value: {n: 400}}" in lines
    assert [line for line in lines if line.startswith("~")] == ["~ #1 differs:", "~ #999 differs:"]
    assert "  (395 matching)" in lines
    assert len(lines) < 30


def test_past_25_differences_the_rest_are_counted() -> None:
    lines = diff_items([{"value": {"n": i}} for i in range(30)], [], shown=_all)
    assert lines is not None
    assert len(lines) == 26
    assert lines[-1] == "... and 5 more differences"


@pytest.mark.parametrize(
    ("expected", "actual", "subset"),
    [
        ({"value": {"a": 1}}, {"value": {"a": 1, "b": 2}}, True),
        ({"value": {"a": 1}}, {"value": {"a": 1, "b": 2}}, False),
        ({"value": {"a": {"x": 1}}}, {"value": {"a": {"x": 1, "y": 2}}}, True),
        ({"value": None}, {"value": None}, False),
        ({"value": None}, {"raw": "x"}, False),
        ({"headers": {"h": "1"}}, {"headers": {"h": "1", "g": "2"}}, False),
        ({"reason": "late"}, {"error": "PoisonRecord", "reason": "late record"}, False),
        ({"reason": "Poison"}, {"error": "PoisonRecord", "reason": "late record"}, False),
        ({"key": ["a", 1]}, {"key": ["a", True]}, False),
        ({"at": "1s"}, {"at": "1.5s"}, False),
    ],
)
def test_matches_agrees_with_diff_fields(expected, actual, subset) -> None:
    from headrace_cli.pipeline_test.compare import matches

    assert matches(expected, actual, subset) == (not diff_fields(expected, actual, subset))
