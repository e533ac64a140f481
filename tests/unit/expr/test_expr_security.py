"""Hostile input: code-execution attempts, resource exhaustion, and odd record contents must be
refused at parse time or evaluate harmlessly, quickly, and only ever raise our two errors."""

from __future__ import annotations

import io
import sys
import time
import tokenize
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import headrace.expr
from headrace.expr import EvaluationError, ExpressionError, compile_expression
from headrace.expr.functions import FUNCTIONS
from headrace.expr.nodes import MAX_DEPTH
from headrace.expr.parser import MAX_LENGTH

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "names starting with '__' are not allowed"),
        ("__import__('os').system('true')", "names starting with '__' are not allowed"),
        ("x.__class__", "names starting with '__' are not allowed"),
        ("x.__class__.__mro__", "names starting with '__' are not allowed"),
        ("().__class__.__bases__", "names starting with '__' are not allowed"),
        ("''.__class__", "names starting with '__' are not allowed"),
        ("`__builtins__`", "names starting with '__' are not allowed"),
        ("x.`__globals__`", "names starting with '__' are not allowed"),
        ("__debug__", "names starting with '__' are not allowed"),
        ("open('f')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("exec('x = 1')", "unknown function 'exec'"),
        ("compile('1', 'f', 'eval')", "unknown function 'compile'"),
        ("getattr(x, 'y')", "unknown function 'getattr'"),
        ("globals()", "unknown function 'globals'"),
        ("type(x)", "unknown function 'type'"),
        ("print(1)", "unknown function 'print'"),
        ("lambda: 1", "unexpected character ':'"),
        ("lambda x: x", "unexpected character ':'"),
        ("(lambda: 1)()", "unexpected character ':'"),
        ("[c for c in x]", "a list is only allowed after 'in'"),
        ("x in [c for c in y]", "unexpected name 'for'"),
        ("{1: 2}", "unexpected character '{'"),
        ("x[0]", "unexpected '['"),
        ("x if y else z", "unexpected name 'if'"),
        ("x := 1", "unexpected character ':'"),
        ("import os", "unexpected name 'os'"),
        ("x; import os", "unexpected character ';'"),
        ("lower.__call__('A')", "names starting with '__' are not allowed"),
        ("lower(x)(y)", "unexpected '('"),
        ("x.y(1)", "field 'x.y' cannot be called"),
        ("f'{x}'", "unexpected string"),
        ("x == \x00", "unexpected character '\\x00'"),
        ("x == \uff11", "unexpected character"),  # a full-width digit is not a number
        ("@x", "unexpected character '@'"),
        ("$x", "unexpected character '$'"),
    ],
)
def test_escape_attempts_are_rejected_at_parse_time(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert message in str(caught.value)


def test_only_the_whitelisted_functions_exist() -> None:
    assert sorted(FUNCTIONS) == ["abs", "coalesce", "len", "lower", "round", "upper"]


def test_no_attribute_access_on_record_objects() -> None:
    class Customer:
        tier = "gold"

        def get(self, key: str) -> str:  # a .get() that is not a Mapping's must not be called
            raise AssertionError("called")

    record = {"customer": Customer(), "s": "text"}
    assert compile_expression("customer.tier").evaluate(record) is None
    assert compile_expression("customer.get").evaluate(record) is None
    assert compile_expression("s.upper").evaluate(record) is None
    assert compile_expression("customer.tier is null").test(record) is True


def test_custom_mappings_are_indexed() -> None:
    class Row(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data

        def __getitem__(self, key: str) -> Any:
            return self.data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self.data)

        def __len__(self) -> int:
            return len(self.data)

    record = Row({"a": Row({"b": 2})})
    assert compile_expression("a.b * 2").evaluate(record) == 4
    assert compile_expression("a.c").evaluate(record) is None


@pytest.mark.parametrize("record", [["a"], "a=1", None, 42])
def test_a_record_that_is_not_a_mapping_is_an_evaluation_error(record: Any) -> None:
    with pytest.raises(EvaluationError, match="a record must be a mapping"):
        compile_expression("a == 1").evaluate(record)


def test_misbehaving_record_values_become_evaluation_errors() -> None:
    class Nasty:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq exploded")

        def __bool__(self) -> bool:
            raise RuntimeError("bool exploded")

        __hash__ = object.__hash__

    class BadMapping(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError(key)

    nasty = Nasty()
    with pytest.raises(EvaluationError, match="eq exploded"):
        compile_expression("x == y").evaluate({"x": nasty, "y": nasty})
    with pytest.raises(EvaluationError, match="bool exploded"):
        compile_expression("x").test({"x": nasty})
    with pytest.raises(EvaluationError, match="KeyError"):
        compile_expression("x").evaluate(BadMapping(x=1))


# -- resource exhaustion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9**9**9", "exponent 387420489 is too large"),
        ("10**100000", "exponent 100000 is too large"),
        ("2 ** 1001", "exponent 1001 is too large"),
        ("2 ** -1001", "exponent -1001 is too large"),
        ("(10 ** 1000) ** 1000", "is too large"),
        ("x + (9 ** 1000) * (9 ** 1000) * (9 ** 1000)", "is too large"),
        ("(-9) ** 9 ** 9", "is too large"),
        ("1e9999999 * 10", "out of range"),
        ("1" * 1001, "number literal is 1001 characters long"),
    ],
)
def test_huge_constants_are_rejected_at_parse_time(text: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert message in caught.value.message
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("text", "record", "message"),
    [
        ("x ** y", {"x": 9, "y": 387420489}, "exponent 387420489 is too large"),
        ("x ** y", {"x": 10, "y": Decimal(100000)}, "exponent Decimal('100000') is too large"),
        ("x ** 1000", {"x": 10**100}, "is too large"),
        ("x * x", {"x": 2**5000}, "is too large"),
        ("x ** 1000", {"x": 10.0}, "result is too large"),
        ("x ** 1000", {"x": Decimal("1E+1000")}, "result is too large"),
        ("x ** y", {"x": 2, "y": float("inf")}, "is too large"),
    ],
)
def test_huge_results_fail_fast_at_evaluation(
    text: str, record: dict[str, Any], message: str
) -> None:
    started = time.monotonic()
    with pytest.raises(EvaluationError) as caught:
        compile_expression(text).evaluate(record)
    assert message in caught.value.message
    assert time.monotonic() - started < 1


def test_allowed_powers_still_work() -> None:
    assert compile_expression("2 ** 1000").evaluate({}) == 2**1000
    assert compile_expression("x ** 3").evaluate({"x": Decimal("1.1")}) == Decimal("1.331")


@pytest.mark.parametrize("levels", [101, 1_000, 4_999])
def test_deep_parentheses_are_an_expression_error_not_recursion(levels: int) -> None:
    text = "(" * levels + "1" + ")" * levels
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert f"nested too deeply (more than {MAX_DEPTH} levels)" in caught.value.message
    assert caught.value.position == MAX_DEPTH


def test_ten_thousand_levels_of_parentheses_are_refused() -> None:
    text = "(" * 10_000 + "1" + ")" * 10_000
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_deep_nesting_under_a_small_stack_still_raises_expression_error() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        with pytest.raises(ExpressionError):
            compile_expression("(" * 3000 + "1" + ")" * 3000)
        with pytest.raises(ExpressionError):
            compile_expression("-" * 3000 + "1")
        assert compile_expression("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH).evaluate({}) == 1
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(
    "text",
    [
        "-" * 500 + "x",
        "not " * 500 + "x",
        "x" + " + x" * 500,
        "x" + " ** x" * 500,
        "lower(" * 500 + "x" + ")" * 500,
        "coalesce(x, " * 500 + "1" + ")" * 500,
        "x in (" * 500 + "1" + ")" * 500,
    ],
)
def test_every_kind_of_nesting_is_capped(text: str) -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression(text)


def test_the_deepest_allowed_expression_compiles_and_evaluates() -> None:
    text = "(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH
    assert compile_expression(text).evaluate({"x": 1}) == 1
    text = "(" * (MAX_DEPTH - 1) + "x + 1" + ")" * (MAX_DEPTH - 1)
    assert compile_expression(text).evaluate({"x": 1}) == 2
    chain = "x" + " + x" * (MAX_DEPTH - 1)
    assert compile_expression(chain).evaluate({"x": 1}) == MAX_DEPTH


def test_long_and_or_chains_are_flat_not_deep() -> None:
    text = " or ".join(f"x == {i}" for i in range(800))
    expression = compile_expression(text)
    assert expression.test({"x": 799}) is True
    assert expression.test({"x": -1}) is False


@pytest.mark.parametrize("size", [MAX_LENGTH + 1, 1_000_000])
def test_very_long_input_is_rejected_fast(size: int) -> None:
    text = "x + " * (size // 4) + "1"
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="expression is too long"):
        compile_expression(text)
    assert time.monotonic() - started < 1


def test_long_input_within_the_limit_is_linear() -> None:
    items = ", ".join(f"'{i:06d}'" for i in range(990))  # a ~10k character in-list
    text = f"x in ({items})"
    assert len(text) <= MAX_LENGTH
    started = time.monotonic()
    expression = compile_expression(text)
    assert time.monotonic() - started < 1
    assert expression.test({"x": "000989"}) is True
    assert expression.test({"x": "000990"}) is False
    long_string = "'" + "a" * (MAX_LENGTH - 2) + "'"
    assert compile_expression(long_string).evaluate({}) == "a" * (MAX_LENGTH - 2)


def test_string_repetition_cannot_blow_up_memory() -> None:
    with pytest.raises(EvaluationError, match="string repetition is not supported"):
        compile_expression("s * 1000000000").evaluate({"s": "x"})
    with pytest.raises(EvaluationError, match="string repetition is not supported"):
        compile_expression("1000000000 * 'x'").evaluate({})


# -- the implementation itself ----------------------------------------------------------------


_FORBIDDEN = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "vars"}


def test_the_package_never_uses_eval_exec_compile_or_ast() -> None:
    package = Path(headrace.expr.__file__).parent
    sources = sorted(package.glob("*.py"))
    assert len(sources) >= 5
    for source in sources:
        text = source.read_text()
        names = {
            token.string
            for token in tokenize.generate_tokens(io.StringIO(text).readline)
            if token.type == tokenize.NAME
        }
        assert not names & _FORBIDDEN, f"{source.name} uses {names & _FORBIDDEN}"
        assert "import ast" not in text and "from ast" not in text, source.name
