"""Arithmetic operators: ``+ - * / // % **`` and unary ``-``/``+``.

Contract of every function here: a null operand gives null (SQL semantics); numbers mix as
``values.number_mode`` describes; anything else raises ``EvaluationError`` naming the operator
and both values, never a bare TypeError or ArithmeticError. Specifically:

- ``+`` also joins two strings; ``'a' + 1`` and ``'a' * 3`` are type errors.
- ``/`` on ints and Decimals gives a Decimal, exact where the quotient has at most 38 digits
  (``1 / 4`` is ``Decimal('0.25')``, ``6 / 3`` is ``Decimal('2')``); floats divide as floats.
- ``//`` and ``%`` floor, as Python ints do, for every number kind, so an int field and a
  Decimal field holding the same value give the same result: ``-7 // 2 == -4``,
  ``-7 % 2 == 1``.
- ``**`` refuses exponents beyond +/-1000 and int results beyond 8192 bits; a negative int
  exponent gives a Decimal (``2 ** -1`` is ``Decimal('0.5')``).
- Division by zero, overflow and invalid Decimal operations raise ``EvaluationError``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, Overflow
from typing import Any

from headrace.expr.errors import EvaluationError, LimitError
from headrace.expr.values import DECIMAL_CONTEXT as CTX
from headrace.expr.values import (
    FLOAT,
    INT,
    MAX_EXPONENT,
    MAX_INT_BITS,
    NUMBER,
    describe,
    number_mode,
    short,
)

__all__ = ["BINARY_OPERATORS", "UNARY_OPERATORS"]

BinaryFn = Callable[[Any, Any], Any]
UnaryFn = Callable[[Any], Any]


def _failure(symbol: str, left: Any, right: Any, exc: ArithmeticError) -> EvaluationError:
    if isinstance(exc, ZeroDivisionError):  # includes decimal.DivisionByZero/DivisionUndefined
        return EvaluationError(f"division by zero: {short(left)} {symbol} {short(right)}")
    too_large = isinstance(exc, OverflowError | Overflow)
    what = "result is too large" if too_large else "invalid operation"
    return EvaluationError(f"{what}: {short(left)} {symbol} {short(right)}")


def _check_int_size(symbol: str, left: int, right: int, bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise LimitError(
            f"result of {short(left)} {symbol} {short(right)} is too large "
            f"(about {bits} bits; the limit is {MAX_INT_BITS})"
        )


def add(left: Any, right: Any) -> Any:
    """``left + right``."""
    kind = type(left)
    if kind is type(right) and (kind is int or kind is str):
        return left + right
    if left is None or right is None:
        return None
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    mode, a, b = number_mode("+", left, right)
    try:
        return a + b if mode != NUMBER else CTX.add(a, b)
    except ArithmeticError as exc:
        raise _failure("+", left, right, exc) from None


def subtract(left: Any, right: Any) -> Any:
    """``left - right``."""
    if type(left) is int and type(right) is int:
        return left - right
    if left is None or right is None:
        return None
    mode, a, b = number_mode("-", left, right)
    try:
        return a - b if mode != NUMBER else CTX.subtract(a, b)
    except ArithmeticError as exc:
        raise _failure("-", left, right, exc) from None


def multiply(left: Any, right: Any) -> Any:
    """``left * right``; int results are size-checked."""
    if left is None or right is None:
        return None
    mode, a, b = number_mode("*", left, right)
    try:
        if mode == INT:
            _check_int_size("*", a, b, a.bit_length() + b.bit_length())
            return a * b
        return a * b if mode == FLOAT else CTX.multiply(a, b)
    except ArithmeticError as exc:
        raise _failure("*", left, right, exc) from None


def divide(left: Any, right: Any) -> Any:
    """``left / right``: Decimal unless a float is involved."""
    if left is None or right is None:
        return None
    mode, a, b = number_mode("/", left, right)
    try:
        return a / b if mode == FLOAT else CTX.divide(Decimal(a), Decimal(b))
    except ArithmeticError as exc:
        raise _failure("/", left, right, exc) from None


def _decimal_divmod(a: Decimal, b: Decimal) -> tuple[Decimal, Decimal]:
    """Floor quotient and remainder (remainder has the divisor's sign), like Python ints."""
    quotient = CTX.divide_int(a, b)  # truncates toward zero
    remainder = CTX.remainder(a, b)  # has the dividend's sign
    if remainder and (remainder < 0) != (b < 0):
        quotient = CTX.subtract(quotient, 1)
        remainder = CTX.add(remainder, b)
    return quotient, remainder


def floor_divide(left: Any, right: Any) -> Any:
    """``left // right``, rounding toward negative infinity."""
    if left is None or right is None:
        return None
    mode, a, b = number_mode("//", left, right)
    try:
        return a // b if mode != NUMBER else _decimal_divmod(a, b)[0]
    except ArithmeticError as exc:
        raise _failure("//", left, right, exc) from None


def modulo(left: Any, right: Any) -> Any:
    """``left % right``; the result has the divisor's sign."""
    if left is None or right is None:
        return None
    mode, a, b = number_mode("%", left, right)
    try:
        return a % b if mode != NUMBER else _decimal_divmod(a, b)[1]
    except ArithmeticError as exc:
        raise _failure("%", left, right, exc) from None


def power(left: Any, right: Any) -> Any:
    """``left ** right`` with the exponent and result-size guards."""
    if left is None or right is None:
        return None
    mode, a, b = number_mode("**", left, right)
    try:
        if b < 0 and not a:  # Decimal says Infinity; Python and SQL say division by zero
            raise ZeroDivisionError
        if not -MAX_EXPONENT <= b <= MAX_EXPONENT:
            raise LimitError(
                f"exponent {short(right)} is too large in '**' (the limit is +/-{MAX_EXPONENT})"
            )
        if mode == INT:
            if b < 0:
                return CTX.power(Decimal(a), b)
            if abs(a) > 1:
                _check_int_size("**", a, b, a.bit_length() * b)
            return a**b
        if mode == FLOAT:
            result = a**b
            if isinstance(result, complex):
                raise EvaluationError(
                    f"'**' of {describe(left)} and {describe(right)} is not a real number"
                )
            return result
        return CTX.power(a, b)
    except ArithmeticError as exc:
        raise _failure("**", left, right, exc) from None


def negate(operand: Any) -> Any:
    """Unary ``-``."""
    if operand is None:
        return None
    if isinstance(operand, bool) or not isinstance(operand, int | float | Decimal):
        raise EvaluationError(f"cannot apply unary '-' to {describe(operand)}")
    return operand.copy_negate() if isinstance(operand, Decimal) else -operand


def plus(operand: Any) -> Any:
    """Unary ``+``: checks that the operand is a number and returns it unchanged."""
    if operand is None:
        return None
    if isinstance(operand, bool) or not isinstance(operand, int | float | Decimal):
        raise EvaluationError(f"cannot apply unary '+' to {describe(operand)}")
    return operand


BINARY_OPERATORS: dict[str, BinaryFn] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "//": floor_divide,
    "%": modulo,
    "**": power,
}
UNARY_OPERATORS: dict[str, UnaryFn] = {"-": negate, "+": plus}
