"""The whitelist of callable functions. Nothing else can be called from an expression.

- ``lower(s)``, ``upper(s)``: the string in lower / upper case.
- ``round(x[, ndigits])``: ``x`` rounded to ``ndigits`` decimal places (default 0; negative
  rounds to tens, hundreds, ...). Ties go away from zero (ROUND_HALF_UP, as SQL does, not
  Python's half-even): ``round(2.5) == 3``, ``round(-2.5) == -3``. A float is rounded by its
  shortest decimal form, so ``round(2.675, 2) == 2.68``. The result keeps the number type
  (int, Decimal or float).
- ``abs(x)``: the absolute value.
- ``coalesce(a, b, ...)``: the first argument that is not null; later ones are not evaluated.
- ``len(x)``: the length of a string, list or mapping.

Every function but ``coalesce`` returns null when an argument is null. A wrong type raises
``EvaluationError`` at evaluation time; an unknown name or a wrong argument count is caught at
parse time (see ``FUNCTIONS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

from headrace.expr.errors import EvaluationError
from headrace.expr.values import DECIMAL_CONTEXT as CTX
from headrace.expr.values import describe

__all__ = ["FUNCTIONS", "Function", "function_names"]

_MAX_NDIGITS: Final = 1000


@dataclass(frozen=True, slots=True)
class Function:
    """A callable of the language: ``impl(*args)`` with ``min_args <= len(args) <= max_args``
    (``max_args`` None: no upper bound). ``lazy``: the compiler evaluates arguments one by one
    (only ``coalesce``), and ``impl`` is used for constant folding only."""

    name: str
    min_args: int
    max_args: int | None
    impl: Callable[..., Any]
    lazy: bool = False

    def arity_text(self) -> str:
        """``'1 argument'``, ``'1 or 2 arguments'``, ``'at least 1 argument'``."""
        low, high = self.min_args, self.max_args
        noun = "argument" if (high or low) == 1 else "arguments"
        if high is None:
            return f"at least {low} {noun}"
        if low == high:
            return f"{low} {noun}"
        return f"{low} or {high} arguments" if high == low + 1 else f"{low} to {high} arguments"


def _string_arg(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise EvaluationError(f"{name}() needs a string, got {describe(value)}")
    return value


def _lower(value: Any) -> str | None:
    return None if value is None else _string_arg("lower", value).lower()


def _upper(value: Any) -> str | None:
    return None if value is None else _string_arg("upper", value).upper()


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | Decimal)


def _abs(value: Any) -> Any:
    if value is None:
        return None
    if not _is_number(value):
        raise EvaluationError(f"abs() needs a number, got {describe(value)}")
    return value.copy_abs() if isinstance(value, Decimal) else abs(value)


def _len(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str | bytes | list | tuple | set | frozenset | Mapping):
        return len(value)
    raise EvaluationError(f"len() needs a string, list or mapping, got {describe(value)}")


def _ndigits(value: Any) -> int:
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvaluationError(f"round() needs a whole number of digits, got {describe(value)}")
    if abs(value) > _MAX_NDIGITS:
        raise EvaluationError(f"round() digits {value} out of range (+/-{_MAX_NDIGITS})")
    return value


def _round_int(value: int, ndigits: int) -> int:
    if ndigits >= 0:
        return value
    unit = int(10**-ndigits)  # ndigits < 0, so an exact int
    quotient, remainder = divmod(abs(value), unit)
    if 2 * remainder >= unit:
        quotient += 1
    return quotient * unit if value >= 0 else -quotient * unit


def _round_decimal(value: Decimal, ndigits: int) -> Decimal:
    try:
        result = value.quantize(Decimal(1).scaleb(-ndigits), rounding=ROUND_HALF_UP, context=CTX)
    except InvalidOperation:
        # More digits than the context holds: fine if there is nothing to round (1E+50, 2).
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= -ndigits:
            return value
        raise
    if ndigits < 0 and CTX.prec > result.adjusted():
        result = result.quantize(Decimal(1), context=CTX)  # 1.3E+3 -> 1300
    return result


def _round(value: Any, *rest: Any) -> Any:
    if value is None or (rest and rest[0] is None):
        return None
    if not _is_number(value):
        raise EvaluationError(f"round() needs a number, got {describe(value)}")
    ndigits = _ndigits(rest[0]) if rest else 0
    try:
        if isinstance(value, int):
            return _round_int(int(value), ndigits)
        if isinstance(value, float):
            return float(_round_decimal(Decimal(str(value)), ndigits))
        return _round_decimal(value, ndigits)
    except ArithmeticError:
        raise EvaluationError(
            f"round() cannot round {describe(value)} to {ndigits} digits "
            f"(the result must be finite and have at most {CTX.prec} digits)"
        ) from None


def _coalesce(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


FUNCTIONS: Final[Mapping[str, Function]] = {
    function.name: function
    for function in (
        Function("abs", 1, 1, _abs),
        Function("coalesce", 1, None, _coalesce, lazy=True),
        Function("len", 1, 1, _len),
        Function("lower", 1, 1, _lower),
        Function("round", 1, 2, _round),
        Function("upper", 1, 1, _upper),
    )
}


def function_names() -> str:
    """``'abs, coalesce, len, lower, round, upper'``, for error messages."""
    return ", ".join(sorted(FUNCTIONS))
