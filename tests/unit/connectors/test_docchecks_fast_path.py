"""``mongo_problem``'s fast path answers exactly as the full walk does."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from connectors.docchecks import _mongo_walk, mongo_problem

DOCS: list[Any] = [
    {"order_id": "o1", "price": 1.5, "n": 3, "ok": True, "none": None},
    {"a": {"b": [1, 2.5, {"c": "x"}]}},
    {"a.b": 1},
    {"$set": 1},
    {"a": {"b": {"$c": 1}}},
    {"a": [{"x.y": 1}]},
    {"a": float("nan")},
    {"a": [1.0, float("inf")]},
    {"a": {"b": [float("-inf")]}},
    {"a": OrderedDict({"x.y": 1})},  # a dict subclass: the full walk decides
    {"a": OrderedDict({"fine": 1})},
    {"a": (1, 2)},
    {1: "non-text key"},
    {"deep": [[[[{"k": [{"z.": 0}]}]]]]},
    {"cost": 1e308, "more": 1e308},
    {"big": 2**63 - 1, "small": -(2**63)},  # the int64 bounds: stored
    {"big": 2**64 - 1},  # a BIGINT UNSIGNED past int64: refused with the reason
    {"a": [1, -(2**63) - 1]},
    {},
]


@pytest.mark.parametrize("doc", DOCS)
def test_fast_path_agrees_with_the_full_walk(doc: Any) -> None:
    assert mongo_problem(doc, 10) == _mongo_walk(doc, "")


def test_problems_name_the_field_path() -> None:
    assert "'a.b.$c'" in (mongo_problem({"a": {"b": {"$c": 1}}}, 10) or "")
    assert "'a[1]'" in (mongo_problem({"a": [1.0, float("inf")]}, 10) or "")


def test_an_integer_past_64_bits_is_a_dead_letter_reason_not_a_crash() -> None:
    """pymongo raises OverflowError on it (a MySQL BIGINT UNSIGNED over 2**63 - 1 crashed the
    sink); the reason names the field and how to keep the value."""
    reason = mongo_problem({"n": {"id": 2**64 - 1}}, 10) or ""
    assert "'n.id' is an integer past 64 bits" in reason
