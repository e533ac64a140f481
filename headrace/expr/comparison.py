"""Comparison operators ``== != < <= > >=`` and list membership.

Contract: a null operand gives null (SQL: unknown), which filters treat as false; use
``is null`` to test for null. Numbers compare by value across int, Decimal and float (a float
meeting a Decimal is converted with ``Decimal(str(f))``); strings compare with strings, booleans
with booleans, and other values (dates, lists) with values of the same type. Comparing values of
different kinds (``'5' == 5``) raises ``EvaluationError``, as does ordering values that have no
order (two dicts).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final

from headrace.expr.errors import EvaluationError
from headrace.expr.values import decimal_text, describe, kind_name, to_decimal

__all__ = ["COMPARISONS", "make_comparator", "member_of", "set_member_of"]

Comparator = Callable[[Any, Any], bool | None]

COMPARISONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

# Exact type pairs that compare correctly with Python's operators, without any coercion.
_DIRECT: Final = frozenset(
    {(kind, kind) for kind in (int, str, Decimal, float, bool)}
    | {(int, Decimal), (Decimal, int), (int, float), (float, int)}
)


def _slow_compare(symbol: str, fn: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    left_kind, right_kind = kind_name(left), kind_name(right)
    if {left_kind, right_kind} == {"string", "number"}:
        # A DECIMAL that travelled as JSON text ("12.50") compares as the number it holds.
        as_number = decimal_text(left if left_kind == "string" else right)
        if as_number is not None:
            if left_kind == "string":
                left, left_kind = as_number, "number"
            else:
                right, right_kind = as_number, "number"
    if left_kind != right_kind:
        raise EvaluationError(
            f"cannot compare {describe(left)} with {describe(right)} using '{symbol}'"
        )
    if left_kind == "number" and (isinstance(left, Decimal) or isinstance(right, Decimal)):
        left, right = to_decimal(left), to_decimal(right)
    try:
        return bool(fn(left, right))
    except (TypeError, ArithmeticError) as exc:
        raise EvaluationError(
            f"cannot compare {describe(left)} with {describe(right)} using '{symbol}': {exc}"
        ) from None


def make_comparator(symbol: str) -> Comparator:
    """The function for comparison operator ``symbol`` (one of ``COMPARISONS``)."""
    fn = COMPARISONS[symbol]

    def compare(left: Any, right: Any) -> bool | None:
        if left is None or right is None:
            return None
        if (type(left), type(right)) in _DIRECT:
            try:
                return fn(left, right)  # type: ignore[no-any-return]
            except ArithmeticError:  # Decimal NaN has no order
                pass
        return _slow_compare(symbol, fn, left, right)  # type: ignore[no-any-return]

    return compare


_equals = make_comparator("==")


def member_of(value: Any, items: Iterable[Any]) -> bool | None:
    """SQL ``value IN (items)``: True if equal to an item; else null if ``value`` or any item
    is null; else False. Raises ``EvaluationError`` if an item's kind differs from the value's.
    """
    if value is None:
        return None
    unknown = False
    for item in items:
        result = _equals(value, item)
        if result:
            return True
        if result is None:
            unknown = True
    return None if unknown else False


def set_member_of(
    value: Any, members: frozenset[Any], kind: str, has_null: bool, items: tuple[Any, ...]
) -> bool | None:
    """``member_of`` for a constant list whose non-null items all have kind ``kind`` (string
    or number, never float): a hash lookup instead of a scan, with the same results."""
    if value is None:
        return None
    value_type = type(value)
    try:
        if (kind == "string" and value_type is str) or (
            kind == "number" and (value_type is int or value_type is Decimal)
        ):
            found = value in members
        elif kind == "number" and value_type is float:
            found = to_decimal(value) in members
        else:
            return member_of(value, items)
    except TypeError:  # an unhashable Decimal('sNaN'): let member_of explain
        return member_of(value, items)
    if found:
        return True
    return None if has_null else False
