"""Parsing: literals, precedence, associativity, fields, and parse errors with exact positions."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from headrace.expr import Expression, ExpressionError, compile_expression
from headrace.expr.nodes import Binary, Compare, Logical, Unary
from headrace.expr.parser import parse


def value(text: str, **record: object) -> object:
    return compile_expression(text).evaluate(record)


# -- literals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("007", 7),
        ("0.1", Decimal("0.1")),
        ("12.50", Decimal("12.50")),
        ("1e3", Decimal("1E+3")),
        ("2.5E-2", Decimal("0.025")),
        ("'single'", "single"),
        ('"double"', "double"),
        ("'it''s'", "it's"),
        ("'a\\'b'", "a'b"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'tab\\there\\nline\\\\'", "tab\there\nline\\"),
        ("'\\u00e9t\\u00e9'", "été"),
        ("''", ""),
        ("true", True),
        ("FALSE", False),
        ("Null", None),
    ],
)
def test_literals(text: str, expected: object) -> None:
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_decimal_literal_is_exact_decimal_never_float() -> None:
    result = value("0.1")
    assert isinstance(result, Decimal)
    assert str(result) == "0.1"


def test_decimal_literal_keeps_its_digits() -> None:
    assert str(value("19.90")) == "19.90"


# -- precedence and associativity -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),  # left-associative
        ("2 * 3 % 4", 2),  # (2 * 3) % 4
        ("20 // 3 * 3", 18),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("(2 ** 3) ** 2", 64),
        ("-2 ** 2", -4),  # ** binds tighter than unary minus
        ("(-2) ** 2", 4),
        ("2 ** -1", Decimal("0.5")),
        ("- - 3", 3),
        ("-3 * -2", 6),
        ("+5 - -5", 10),
        ("1 + 2 > 2", True),
        ("1 + 2 == 3 and 2 * 2 == 4", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not false and false", False),  # (not false) and false
        ("not (false and false)", True),
        ("not 1 == 2", True),  # not (1 == 2)
        ("not not true", True),
        ("1 in (1, 2) and 3 not in (1, 2)", True),
        ("null is null and 1 is not null", True),
    ],
)
def test_precedence_and_associativity(text: str, expected: object) -> None:
    assert value(text) == expected


def test_tree_shape_for_mixed_precedence() -> None:
    tree = parse("a or b and not c == d + e * f ** g")
    assert isinstance(tree, Logical) and tree.op == "or"
    conjunction = tree.items[1]
    assert isinstance(conjunction, Logical) and conjunction.op == "and"
    negation = conjunction.items[1]
    assert isinstance(negation, Unary) and negation.op == "not"
    comparison = negation.operand
    assert isinstance(comparison, Compare) and comparison.op == "=="
    total = comparison.right
    assert isinstance(total, Binary) and total.op == "+"
    product = total.right
    assert isinstance(product, Binary) and product.op == "*"
    assert isinstance(product.right, Binary) and product.right.op == "**"


def test_and_or_chains_are_flattened() -> None:
    tree = parse("a and b and c and d")
    assert isinstance(tree, Logical)
    assert len(tree.items) == 4
    assert tree.depth == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 = 1", True),
        ("1 == 1", True),
        ("1 <> 2", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 5", False),
    ],
)
def test_comparison_operators_and_sql_spellings(text: str, expected: bool) -> None:
    assert value(text) is expected


@pytest.mark.parametrize("text", ["x IN (1)", "x Not In (2)", "x IS NULL", "x is NOT null"])
def test_keywords_are_case_insensitive(text: str) -> None:
    assert compile_expression(text).fields == frozenset({"x"})


def test_function_names_are_case_insensitive() -> None:
    assert value("UPPER(s) + Lower('X')", s="ab") == "ABx"


# -- fields ------------------------------------------------------------------------------------


def test_fields_lists_top_level_names() -> None:
    expression = compile_expression(
        "status != 'cancelled' and customer.tier in ('gold') and coalesce(`order-id`, 0) > 0"
    )
    assert expression.fields == frozenset({"status", "customer", "order-id"})


def test_constant_expression_has_no_fields() -> None:
    assert compile_expression("1 + 2").fields == frozenset()


def test_keyword_allowed_as_dotted_segment() -> None:
    assert value("meta.null.in", meta={"null": {"in": 3}}) == 3


def test_backticks_allow_odd_names_and_doubled_backtick() -> None:
    assert value("`order-id` + `a``b`", **{"order-id": 1, "a`b": 2}) == 3
    assert value("`with space`.`x.y`", **{"with space": {"x.y": "ok"}}) == "ok"


def test_whitespace_and_newlines_are_ignored() -> None:
    assert value("  a\n  +\tb  ", a=1, b=2) == 3


def test_trailing_comma_in_list_is_allowed() -> None:
    assert value("x in (1, 2,)", x=2) is True
    assert value("x in []", x=2) is False


# -- expression object ---------------------------------------------------------------------


def test_expression_is_frozen_comparable_and_picklable() -> None:
    first = compile_expression("a + 1")
    assert first == compile_expression("a + 1")
    assert hash(first) == hash(compile_expression("a + 1"))
    with pytest.raises(AttributeError):
        first.text = "b"  # type: ignore[misc]
    clone = pickle.loads(pickle.dumps(first))
    assert isinstance(clone, Expression)
    assert clone.evaluate({"a": 41}) == 42


def test_non_string_expression_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="must be a string, got int"):
        compile_expression(5)  # type: ignore[arg-type]


# -- errors with positions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        ("'abc", 0, "unterminated string"),
        ('x == "abc', 5, "unterminated string"),
        ("`abc", 0, "unterminated quoted name"),
        ("``", 0, "empty quoted name"),
        ("1 +", 3, "unexpected end of expression"),
        ("a b", 2, "unexpected name 'b'"),
        ("a > 1 garbage", 6, "unexpected name 'garbage'"),
        ("1 2", 2, "unexpected number 2"),
        ("(1 + 2", 6, "unexpected end of expression"),
        ("(1 + 2))", 7, "unexpected ')'"),
        ("* 2", 0, "unexpected '*'"),
        ("a and or b", 6, "unexpected 'or'"),
        ("a < b < c", 6, "comparisons cannot be chained"),
        ("a == b != c", 7, "comparisons cannot be chained"),
        ("x is 5", 5, "expected 'null' after 'is'"),
        ("x is not true", 9, "expected 'null' after 'is not'"),
        ("x in 5", 5, "expected a list after 'in'"),
        ("x in (1, 2", 10, "unexpected end of expression"),
        ("x in (1 2)", 8, "unexpected number 2"),
        ("x not y", 2, "unexpected 'not'"),
        ("x == not y", 5, "'not' cannot appear here"),
        ("a.", 2, "unexpected end of expression"),
        ("a.1", 2, "unexpected number 1"),
        ("1.", 2, "expected a digit after the decimal point"),
        ("1e", 2, "expected the digits of an exponent"),
        ("12abc", 2, "invalid number '12a'"),
        ("1.2.3", 3, "invalid number"),
        (".5", 0, "a number must start with a digit"),
        ("'bad \\q escape'", 5, "invalid escape sequence"),
        ("'\\u12'", 1, "invalid escape sequence"),
        ("a & b", 2, "unexpected character '&'"),
        ("a || b", 2, "unexpected character '|'"),
        ("!a", 0, "unexpected character '!'"),
        ("a; b", 1, "unexpected character ';'"),
        ("[1, 2]", 0, "a list is only allowed after 'in'"),
        ("1e9999999", 0, "out of range"),
        ("lower()", 0, "lower() takes 1 argument, got 0"),
        ("lower(a, b)", 0, "lower() takes 1 argument, got 2"),
        ("x + round(1, 2, 3)", 4, "round() takes 1 or 2 arguments, got 3"),
        ("coalesce()", 0, "coalesce() takes at least 1 argument, got 0"),
        ("lower(a b)", 8, "expected ',' or ')' in lower()"),
        ("abs(1,)", 6, "unexpected ')'"),
        ("x + frobnicate(1)", 4, "unknown function 'frobnicate'"),
        ("a.b(1)", 3, "field 'a.b' cannot be called"),
        ("`lower`(x)", 7, "field 'lower' cannot be called"),
        ("x in (1, 'a')", 2, "mixes number and string values"),
    ],
)
def test_parse_errors_have_exact_positions(text: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    error = caught.value
    assert message in str(error)  # the message or its hint
    assert str(error).startswith(error.message)
    assert error.position == position
    assert error.text == text
    assert isinstance(error, ValueError)


def test_error_string_names_column_hint_and_draws_a_caret() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("x + eval('1')")
    lines = str(caught.value).splitlines()
    assert lines[0] == (
        "unknown function 'eval' at column 5; functions are: abs, coalesce, len, lower, "
        "round, upper"
    )
    assert lines[1] == "    x + eval('1')"
    assert lines[2] == "        ^"


def test_error_in_multiline_text_reports_line_and_column() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("a > 1\nand b c")
    error = caught.value
    assert (error.line, error.column, error.position) == (2, 7, 12)
    assert str(error).startswith("unexpected name 'c' at line 2, column 7;")
    assert str(error).splitlines()[1:] == ["    and b c", "          ^"]


def test_long_error_snippet_is_windowed_around_the_position() -> None:
    text = "a + " * 30 + "?" + " + b" * 30
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    _, snippet, caret = str(caught.value).splitlines()
    assert snippet.startswith("    ...") and snippet.endswith("...")
    assert snippet[len(caret) - 1] == "?"


def test_expression_error_pickles() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("1 +")
    clone = pickle.loads(pickle.dumps(caught.value))
    assert (clone.message, clone.text, clone.position, clone.hint) == (
        caught.value.message,
        "1 +",
        3,
        caught.value.hint,
    )
