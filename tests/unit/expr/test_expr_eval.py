"""Evaluation: exact decimals, number mixing, null semantics, comparisons, membership, logic,
functions, field paths, and runtime errors."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest

from headrace.errors import PoisonRecord
from headrace.expr import EvaluationError, compile_expression


def value(text: str, **record: Any) -> Any:
    return compile_expression(text).evaluate(record)


def evaluation_error(text: str, **record: Any) -> EvaluationError:
    with pytest.raises(EvaluationError) as caught:
        compile_expression(text).evaluate(record)
    return caught.value


# -- decimals and number mixing -----------------------------------------------------------------


def test_decimal_sum_ties_with_sql() -> None:
    assert value("0.1 + 0.2 == 0.3") is True
    assert value("0.1 + 0.2") == Decimal("0.3")


def test_money_arithmetic_stays_exact() -> None:
    total = value("price * quantity", price=Decimal("19.99"), quantity=3)
    assert total == Decimal("59.97")
    assert isinstance(total, Decimal)


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("a + b", {"a": 1, "b": 2}, 3),
        ("a + b", {"a": 1, "b": Decimal("0.5")}, Decimal("1.5")),
        ("a + b", {"a": 0.1, "b": Decimal("0.2")}, Decimal("0.3")),  # float via str
        ("a * b", {"a": Decimal("1.1"), "b": 0.1}, Decimal("0.11")),
        ("a + b", {"a": 0.5, "b": 1}, 1.5),
        ("a - b", {"a": 10, "b": 3}, 7),
        ("a / b", {"a": 1, "b": 4}, Decimal("0.25")),
        ("a / b", {"a": 6, "b": 3}, Decimal("2")),
        ("a / b", {"a": Decimal("1"), "b": 8}, Decimal("0.125")),
        ("a / b", {"a": 1.0, "b": 4}, 0.25),
        ("a // b", {"a": 7, "b": 2}, 3),
        ("a // b", {"a": -7, "b": 2}, -4),
        ("a // b", {"a": Decimal("-7"), "b": 2}, Decimal("-4")),  # floors like ints
        ("a % b", {"a": -7, "b": 2}, 1),
        ("a % b", {"a": Decimal("-7"), "b": 2}, Decimal("1")),
        ("a % b", {"a": Decimal("7.5"), "b": -2}, Decimal("-0.5")),
        ("a ** b", {"a": 2, "b": 10}, 1024),
        ("a ** b", {"a": 2, "b": -2}, Decimal("0.25")),
        ("a ** b", {"a": Decimal("1.5"), "b": 2}, Decimal("2.25")),
        ("a ** b", {"a": 2.0, "b": 3}, 8.0),
        ("-a", {"a": Decimal("2.50")}, Decimal("-2.50")),
        ("+a", {"a": 3}, 3),
        ("a + b", {"a": "foo", "b": "bar"}, "foobar"),
    ],
)
def test_arithmetic(text: str, record: dict[str, Any], expected: Any) -> None:
    result = compile_expression(text).evaluate(record)
    assert result == expected
    assert type(result) is type(expected)


def test_division_is_decimal_rounded_to_38_digits() -> None:
    third = value("1 / 3")
    assert isinstance(third, Decimal)
    assert third == Decimal("0." + "3" * 38)


def test_decimal_context_is_private() -> None:
    import decimal

    with decimal.localcontext() as context:
        context.prec = 3
        assert value("1 / 3") == Decimal("0." + "3" * 38)


# -- null semantics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x + 1",
        "1 - x",
        "x * 2",
        "x / 2",
        "2 // x",
        "x % 2",
        "x ** 2",
        "-x",
        "x == 1",
        "x != 1",
        "x < 1",
        "x >= 1",
        "x == null",
        "null = null",
        "x in (1, 2)",
        "x not in (1, 2)",
        "not x",
        "lower(x)",
        "upper(x)",
        "round(x)",
        "round(1.5, x)",
        "abs(x)",
        "len(x)",
        "missing.nested.path",
    ],
)
def test_null_in_gives_null_out(text: str) -> None:
    expression = compile_expression(text)
    assert expression.evaluate({"x": None}) is None
    assert expression.evaluate({}) is None  # a missing field is null
    assert expression.test({}) is False


def test_is_null_and_is_not_null() -> None:
    is_null = compile_expression("x is null")
    is_not_null = compile_expression("x is not null")
    assert is_null.evaluate({}) is True
    assert is_null.evaluate({"x": None}) is True
    assert is_null.evaluate({"x": 0}) is False
    assert is_null.evaluate({"x": ""}) is False
    assert is_not_null.evaluate({"x": False}) is True
    assert is_not_null.evaluate({}) is False
    assert value("(x + 1) is null", x=None) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null and false", False),
        ("false and null", False),
        ("null and true", None),
        ("true and null", None),
        ("null or true", True),
        ("true or null", True),
        ("null or false", None),
        ("false or null", None),
        ("not null", None),
        ("null and null", None),
        ("true and true and null", None),
        ("false or false or true", True),
        ("x > 1 and y > 1", None),
        ("x > 1 or y > 1", None),
        ("x > 1 or 2 > 1", True),
        ("x > 1 and 1 > 2", False),
    ],
)
def test_three_valued_logic(text: str, expected: bool | None) -> None:
    assert value(text) is expected


def test_logic_uses_truthiness_and_returns_booleans() -> None:
    assert value("name and qty", name="bob", qty=2) is True
    assert value("name and qty", name="", qty=2) is False
    assert value("name or qty", name="", qty=0) is False
    assert value("not name", name="") is True
    assert value("a or b or c", a=0, b="", c=[1]) is True


def test_and_or_short_circuit() -> None:
    # The right side would fail ('a' + 1) if it were evaluated.
    assert value("false and s + 1 > 0", s="a") is False
    assert value("true or s + 1 > 0", s="a") is True
    assert value("x > 0 and y > 0 and s + 1 > 0", x=0, y=1, s="a") is False
    with pytest.raises(EvaluationError):
        value("null and s + 1 > 0", s="a")  # null does not decide 'and'


# -- comparisons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("a == b", {"a": 1, "b": Decimal("1.00")}, True),
        ("a < b", {"a": 1, "b": Decimal("1.01")}, True),
        ("a == b", {"a": 0.1, "b": Decimal("0.1")}, True),  # float via str
        ("a > b", {"a": 0.30000000000000004, "b": Decimal("0.3")}, True),
        ("a == b", {"a": 2.0, "b": 2}, True),
        ("a < b", {"a": "apple", "b": "banana"}, True),
        ("a = b", {"a": True, "b": True}, True),
        ("a != b", {"a": [1, 2], "b": [1, 2]}, False),
        ("status != 'cancelled'", {"status": "paid"}, True),
    ],
)
def test_comparisons(text: str, record: dict[str, Any], expected: bool) -> None:
    assert compile_expression(text).evaluate(record) is expected


@pytest.mark.parametrize(
    ("text", "record"),
    [
        ("a == b", {"a": "five", "b": 5}),
        ("a < b", {"a": "5 apples", "b": Decimal(5)}),
        ("a == b", {"a": True, "b": 1}),
        ("a > b", {"a": {"x": 1}, "b": {"x": 2}}),
        ("a < b", {"a": Decimal("NaN"), "b": 1}),
    ],
)
def test_incompatible_comparisons_raise(text: str, record: dict[str, Any]) -> None:
    with pytest.raises(EvaluationError, match="cannot compare"):
        compile_expression(text).evaluate(record)


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        # DECIMAL columns arrive from JSON as exact text; with a number they act as numbers.
        ("price * qty", {"price": "1.10", "qty": 3}, Decimal("3.30")),
        ("price + 0.2", {"price": "0.1"}, Decimal("0.3")),
        ("price > 1", {"price": "1.10"}, True),
        ("price == 1.1", {"price": "1.10"}, True),
        ("2 * price", {"price": "-.5"}, Decimal("-1.0")),
        ("a + b", {"a": "1", "b": "2"}, "12"),  # two strings stay strings
    ],
)
def test_decimal_text_meets_numbers_as_a_number(
    text: str, record: dict[str, Any], expected: Any
) -> None:
    assert compile_expression(text).evaluate(record) == expected


def test_non_numeric_text_with_a_number_is_still_an_error() -> None:
    with pytest.raises(EvaluationError, match="cannot apply '\\*' to string 'abc'"):
        compile_expression("name * 2").evaluate({"name": "abc"})


# -- membership -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "x", "expected"),
    [
        ("x in (1, 2, 3)", 2, True),
        ("x in (1, 2, 3)", Decimal("2.0"), True),
        ("x in (1, 2, 3)", 2.0, True),
        ("x in (1, 2, 3)", 4, False),
        ("x in (0.1, 0.2)", 0.1, True),
        ("x in [1, 2]", 1, True),
        ("x not in ('a', 'b')", "c", True),
        ("x not in ('a', 'b')", "a", False),
        ("x in ('a', null)", "a", True),
        ("x in ('a', null)", "b", None),  # SQL: unknown
        ("x not in ('a', null)", "b", None),
        ("x in ()", 1, False),
        ("x in (y, z)", 3, True),
        ("x in (y, 1 + 1)", 2, True),
        ("x in (y, null)", 7, None),
        ("x in (true, false)", False, True),
    ],
)
def test_membership(text: str, x: Any, expected: bool | None) -> None:
    assert compile_expression(text).evaluate({"x": x, "y": 1, "z": 3}) is expected


def test_membership_of_wrong_kind_raises() -> None:
    error = evaluation_error("x in ('a', 'b')", x=1)
    assert "cannot compare number 1 with string 'a'" in error.message


# -- functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("lower(s)", {"s": "MiXeD"}, "mixed"),
        ("upper(s)", {"s": "MiXeD"}, "MIXED"),
        ("abs(n)", {"n": -3}, 3),
        ("abs(n)", {"n": Decimal("-2.50")}, Decimal("2.50")),
        ("abs(n)", {"n": -1.5}, 1.5),
        ("len(s)", {"s": "héllo"}, 5),
        ("len(s)", {"s": [1, 2, 3]}, 3),
        ("len(s)", {"s": {"a": 1}}, 1),
        ("coalesce(a, b, 'z')", {"b": "y"}, "y"),
        ("coalesce(a, b, 'z')", {}, "z"),
        ("coalesce(a)", {}, None),
        ("coalesce(a, 0) + 1", {"a": None}, 1),
        ("round(n)", {"n": Decimal("2.5")}, Decimal("3")),  # half up, not half even
        ("round(n)", {"n": Decimal("-2.5")}, Decimal("-3")),
        ("round(n)", {"n": Decimal("3.5")}, Decimal("4")),
        ("round(n, 2)", {"n": Decimal("1.005")}, Decimal("1.01")),
        ("round(n, 2)", {"n": Decimal("1.5")}, Decimal("1.50")),
        ("round(n, -2)", {"n": Decimal("1250")}, Decimal("1300")),
        ("round(n)", {"n": 7}, 7),
        ("round(n, -1)", {"n": 25}, 30),
        ("round(n, -1)", {"n": -25}, -30),
        ("round(n, -1)", {"n": 24}, 20),
        ("round(n)", {"n": 2.5}, 3.0),
        ("round(n, 2)", {"n": 2.675}, 2.68),  # by its shortest decimal form
        ("round(n, d)", {"n": Decimal("1.26"), "d": 1}, Decimal("1.3")),
    ],
)
def test_functions(text: str, record: dict[str, Any], expected: Any) -> None:
    result = compile_expression(text).evaluate(record)
    assert result == expected
    assert type(result) is type(expected)


def test_coalesce_does_not_evaluate_later_arguments() -> None:
    assert value("coalesce(a, s + 1)", a=1, s="boom") == 1


@pytest.mark.parametrize(
    ("text", "record", "message"),
    [
        ("lower(n)", {"n": 1}, "lower() needs a string, got number 1"),
        ("upper(n)", {"n": True}, "upper() needs a string, got boolean True"),
        ("abs(s)", {"s": "x"}, "abs() needs a number, got string 'x'"),
        ("round(s)", {"s": "1.5"}, "round() needs a number"),
        ("round(n, d)", {"n": 1, "d": Decimal("0.5")}, "whole number of digits"),
        ("round(n, d)", {"n": 1, "d": 5000}, "out of range"),
        ("round(n, 2)", {"n": Decimal("Infinity")}, "cannot round"),
        ("len(n)", {"n": 12}, "len() needs a string, list or mapping, got number 12"),
    ],
)
def test_function_type_errors(text: str, record: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(text).evaluate(record)


# -- fields -------------------------------------------------------------------------------------


def test_dotted_paths_index_nested_mappings() -> None:
    record = {"customer": {"tier": "gold", "address": {"city": "Oslo"}}}
    assert compile_expression("customer.address.city").evaluate(record) == "Oslo"
    assert compile_expression("customer.tier == 'gold'").test(record) is True
    assert compile_expression("customer.missing").evaluate(record) is None
    assert compile_expression("customer.tier.length").evaluate(record) is None


def test_missing_field_is_null_not_an_error() -> None:
    assert compile_expression("ghost").evaluate({"x": 1}) is None
    assert compile_expression("ghost > 1").test({"x": 1}) is False


# -- test() -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"status": "paid", "quantity": 2}, True),
        ({"status": "cancelled", "quantity": 2}, False),
        ({"status": "paid", "quantity": 0}, False),
        ({"status": "paid"}, False),  # quantity null -> null -> False
        ({}, False),
    ],
)
def test_filter_from_the_pipeline_file(record: dict[str, Any], expected: bool) -> None:
    assert compile_expression("status != 'cancelled' and quantity > 0").test(record) is expected


def test_test_uses_truthiness() -> None:
    assert compile_expression("x").test({"x": Decimal("0.00")}) is False
    assert compile_expression("x").test({"x": "yes"}) is True
    assert compile_expression("x").test({"x": []}) is False


def test_having_on_aggregate_output() -> None:
    having = compile_expression("revenue > 0")
    assert having.test({"revenue": Decimal("0.01")}) is True
    assert having.test({"revenue": Decimal("0")}) is False


# -- runtime errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record", "message", "position"),
    [
        ("'a' + 1", {}, "cannot apply '+' to string 'a' and number 1", 4),
        ("s * 3", {"s": "ab"}, "string repetition is not supported", 2),
        ("x + true", {"x": 1}, "cannot apply '+' to number 1 and boolean True", 2),
        ("-s", {"s": "x"}, "cannot apply unary '-' to string 'x'", 0),
        ("x / 0", {"x": 1}, "division by zero: 1 / 0", 2),
        ("1 / 0", {}, "division by zero", 2),
        ("x // y", {"x": Decimal(1), "y": 0}, "division by zero", 2),
        ("x % y", {"x": 5, "y": 0}, "division by zero", 2),
        ("x ** -1", {"x": 0}, "division by zero", 2),
        ("x ** -2", {"x": Decimal("0.0")}, "division by zero", 2),
        ("x ** 0.5", {"x": -4}, "invalid operation", 2),
        ("x ** y", {"x": -8.0, "y": 0.5}, "not a real number", 2),
        ("x * 10", {"x": Decimal("9E+999999")}, "result is too large", 2),
        ("a + (b - c * d)", {"a": 1, "b": 2, "c": 3, "d": "x"}, "cannot apply '*'", 11),
        ("x in (y, 'a')", {"x": "a", "y": 1}, "cannot compare string 'a' with number 1", 2),
    ],
)
def test_runtime_errors_name_the_values_and_the_operator(
    text: str, record: dict[str, Any], message: str, position: int
) -> None:
    error = evaluation_error(text, **record)
    assert message in error.message
    assert error.position == position
    assert error.text == text
    assert str(error) == f"{error.message} at column {position + 1} of expression {text!r}"


def test_evaluation_error_is_a_poison_record_and_pickles() -> None:
    error = evaluation_error("x + 1", x="a")
    assert isinstance(error, PoisonRecord)
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)


def test_one_bad_record_does_not_break_the_expression() -> None:
    expression = compile_expression("price * quantity")
    with pytest.raises(EvaluationError):
        expression.evaluate({"price": "n/a", "quantity": 1})
    assert expression.evaluate({"price": Decimal("2.5"), "quantity": 2}) == Decimal("5.0")
