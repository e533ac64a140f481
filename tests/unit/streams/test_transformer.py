"""Transformer: every step kind, hooks (list/None/raise), cast edge cases, validate, errors."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fixtures.avro import ORDER_MIN

from headrace.config import TransformStep
from headrace.errors import ConfigError, PoisonRecord
from streams.operators.transform import Transformer, cast_value


def tf(*steps: dict[str, Any], schemas_dir: Path | None = None) -> Transformer:
    return Transformer([TransformStep.model_validate(s) for s in steps], schemas_dir=schemas_dir)


def test_filter_set_rename_drop_in_order() -> None:
    t = tf(
        {"filter": "status != 'cancelled' and quantity > 0"},
        {"set": {"total": "price * quantity"}},
        {"rename": {"total": "amount"}},
        {"drop": ["status"]},
    )
    out = t.apply({"status": "paid", "quantity": 3, "price": Decimal("0.1")})
    assert out == [{"quantity": 3, "price": Decimal("0.1"), "amount": Decimal("0.3")}]
    assert t.apply({"status": "cancelled", "quantity": 3, "price": 1}) == []
    assert t.apply({"status": "paid", "quantity": None, "price": 1}) == []  # null is false


def test_set_reads_the_record_before_the_step() -> None:
    assert tf({"set": {"a": "b", "b": "a"}}).apply({"a": 1, "b": 2}) == [{"a": 2, "b": 1}]


def test_expression_error_is_poison_naming_the_step() -> None:
    with pytest.raises(PoisonRecord, match=r"transform\[1\] set"):
        tf({"filter": "true"}, {"set": {"x": "a * 2"}}).apply({"a": "text"})


@pytest.mark.parametrize(
    ("value", "to", "expected"),
    [
        ("42", "int", 42),
        (Decimal("4.0"), "int", 4),
        (1.1, "decimal", Decimal("1.1")),
        ("0.30", "decimal", Decimal("0.30")),
        ("yes", "bool", True),
        (0, "bool", False),
        (3, "str", "3"),
        ("2026-01-02T03:04:05", "timestamp", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (0, "timestamp", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2026-01-02T03:04:05Z", "date", date(2026, 1, 2)),
        (None, "int", None),
    ],
)
def test_cast_values(value: Any, to: str, expected: Any) -> None:
    assert cast_value(value, to) == expected


@pytest.mark.parametrize(
    ("value", "to"), [("x", "int"), (1.5, "int"), ("maybe", "bool"), ("x", "decimal")]
)
def test_bad_cast_is_poison_naming_the_field(value: Any, to: str) -> None:
    with pytest.raises(PoisonRecord, match=f"field 'f': cannot cast to {to}"):
        tf({"cast": {"f": to}}).apply({"f": value})


@pytest.fixture
def hooks() -> Any:
    mod = types.ModuleType("headrace_test_hooks")

    def split(v: dict[str, Any]) -> Any:
        return [{**v, "part": i} for i in range(v["n"])]

    def nothing(v: dict[str, Any]) -> Any:
        return None

    def boom(v: dict[str, Any]) -> Any:
        raise RuntimeError("hook failed on purpose")

    def wrong(v: dict[str, Any]) -> Any:
        return 42

    mod.split, mod.nothing, mod.boom, mod.wrong = split, nothing, boom, wrong  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_python_hook_list_none_raise_and_wrong_type(hooks: Any) -> None:
    assert tf({"python": "headrace_test_hooks:split"}).apply({"n": 2}) == [
        {"n": 2, "part": 0},
        {"n": 2, "part": 1},
    ]
    assert tf({"python": "headrace_test_hooks:nothing"}).apply({"n": 1}) == []
    with pytest.raises(PoisonRecord, match="RuntimeError: hook failed on purpose"):
        tf({"python": "headrace_test_hooks:boom"}).apply({"n": 1})
    with pytest.raises(PoisonRecord, match="returned int"):
        tf({"python": "headrace_test_hooks:wrong"}).apply({"n": 1})


def test_unknown_hook_is_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        tf({"python": "no_such_module_xyz:f"})
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        tf({"python": "os.path:nope"})


def test_validate_against_avsc(tmp_path: Path) -> None:
    (tmp_path / "order.avsc").write_text(json.dumps(ORDER_MIN))
    t = tf({"validate": "order"}, schemas_dir=tmp_path)
    assert t.apply({"id": 1, "note": None}) == [{"id": 1, "note": None}]
    with pytest.raises(PoisonRecord, match="does not match schema 'order'"):
        t.apply({"id": "one"})
    with pytest.raises(ConfigError, match=r"missing\.avsc"):
        tf({"validate": "missing"}, schemas_dir=tmp_path)
