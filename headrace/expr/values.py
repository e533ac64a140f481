"""Runtime values: their language-level kinds, number coercion, and the Decimal context.

Values are plain Python objects: ``None`` (null), ``bool``, ``int``, ``decimal.Decimal``,
``float`` (only when a record holds one), ``str``, and whatever else a record holds (lists,
dicts, datetimes), which only equality, ordering within one type, ``len`` and ``coalesce`` use.

Numbers mix as follows: int with int stays int; anything with a Decimal becomes Decimal, a float
converted through ``Decimal(str(f))`` so ``0.1`` means 0.1; float with int stays float. ``bool``
is not a number here (``true + 1`` is a type error), although Python says it is.
"""

from __future__ import annotations

import re
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, Final

from headrace.expr.errors import EvaluationError

__all__ = [
    "DECIMAL_CONTEXT",
    "FLOAT",
    "INT",
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "NUMBER",
    "describe",
    "kind_name",
    "number_mode",
    "short",
    "to_decimal",
    "type_error",
]

# Decimal arithmetic runs in this private context, never the thread's current one, so a caller
# that changes ``decimal.getcontext()`` cannot change our results. 38 digits is SQL's largest
# DECIMAL precision; inexact results (1/3) round half-even, as IEEE 754 does. Overflow, division
# by zero and invalid operations raise instead of yielding Infinity or NaN. Sharing one context
# between threads is safe: we never read its flags.
DECIMAL_CONTEXT: Final = Context(
    prec=38,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

#: ``**`` refuses an exponent whose absolute value is larger than this.
MAX_EXPONENT: Final = 1000
#: An integer result (``**``, ``*``) may have at most this many bits (about 2,466 digits).
MAX_INT_BITS: Final = 8192

# number_mode() results: how two numbers combine.
INT: Final = 0
FLOAT: Final = 1
NUMBER: Final = 2  # Decimal


def kind_name(value: Any) -> str:
    """The language-level type of ``value``: null, boolean, number, string, or the Python type
    name for anything else (list, dict, datetime, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float | Decimal):
        return "number"
    return type(value).__name__


def short(value: Any) -> str:
    """``repr(value)`` shortened to 40 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe(value: Any) -> str:
    """``kind_name`` plus ``short``: ``string 'a'``, ``number Decimal('1.5')``."""
    return f"{kind_name(value)} {short(value)}"


def to_decimal(value: int | float | Decimal) -> Decimal:
    """Exact conversion to Decimal; a float goes through ``str`` so 0.1 becomes Decimal('0.1')."""
    if isinstance(value, float):
        return Decimal(str(value))
    return Decimal(value)


#: Text that stands for an exact number: how DECIMAL values travel in JSON ("12.50").
_DECIMAL_TEXT: Final = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"


def decimal_text(value: Any) -> Decimal | None:
    """The Decimal a string such as ``"12.50"`` stands for, or None for any other value.

    DECIMAL columns travel as strings in JSON (exact, unlike a float), so a string holding a
    plain decimal number acts as that number when the other operand is a number.
    """
    if type(value) is str and len(value) <= 64 and re.fullmatch(_DECIMAL_TEXT, value):
        return Decimal(value)
    return None


def _numeric_kind(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return INT
    if kind is Decimal:
        return NUMBER
    if kind is float:
        return FLOAT
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return INT
    if isinstance(value, Decimal):
        return NUMBER
    if isinstance(value, float):
        return FLOAT
    return None


# Exact type pairs that need no conversion: Context methods take int operands as they are.
_FAST_MODES: Final[dict[tuple[type, type], int]] = {
    (int, int): INT,
    (Decimal, Decimal): NUMBER,
    (Decimal, int): NUMBER,
    (int, Decimal): NUMBER,
    (float, float): FLOAT,
    (float, int): FLOAT,
    (int, float): FLOAT,
}


def number_mode(symbol: str, left: Any, right: Any) -> tuple[int, Any, Any]:
    """Coerce two operands of ``symbol`` to one number kind: ``(mode, left, right)``.

    ``mode`` is ``INT`` (both int), ``FLOAT`` (float with float or int) or ``NUMBER`` (both
    converted to Decimal). Raises ``EvaluationError`` naming both values if either is not a
    number. Neither operand may be None (callers handle null first). In ``NUMBER`` mode an
    operand may stay an int, which every ``DECIMAL_CONTEXT`` method accepts.
    """
    mode = _FAST_MODES.get((type(left), type(right)))
    if mode is not None:
        return mode, left, right
    left_kind = _numeric_kind(left)
    right_kind = _numeric_kind(right)
    if left_kind is None and right_kind is not None and (text := decimal_text(left)) is not None:
        return NUMBER, text, to_decimal(right)
    if right_kind is None and left_kind is not None and (text := decimal_text(right)) is not None:
        return NUMBER, to_decimal(left), text
    if left_kind is None or right_kind is None:
        raise type_error(symbol, left, right)
    if left_kind == NUMBER or right_kind == NUMBER:
        return NUMBER, to_decimal(left), to_decimal(right)
    if left_kind == FLOAT or right_kind == FLOAT:
        return FLOAT, left, right
    return INT, int(left), int(right)


def type_error(symbol: str, left: Any, right: Any) -> EvaluationError:
    """The error for an operator applied to operands it does not support."""
    message = f"cannot apply '{symbol}' to {describe(left)} and {describe(right)}"
    if symbol == "*" and (isinstance(left, str) or isinstance(right, str)):
        message += " (string repetition is not supported)"
    elif symbol == "+" and (isinstance(left, str) or isinstance(right, str)):
        message += " (only two strings can be joined with '+')"
    return EvaluationError(message)
