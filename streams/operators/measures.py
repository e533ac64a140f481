"""Measure accumulators with SQL semantics: nulls are ignored, an empty sum/min/max/avg is null.

An accumulator is a small list (so a Faust table can pickle it cheaply) updated in place:

- ``count()``: ``[n]`` counts records; ``count(x)``: ``[n]`` counts non-null ``x``;
- ``sum``/``min``/``max``: ``[value or None]``;
- ``avg``: ``[sum, n]``; the result is ``sum / n`` (Decimal for int/Decimal input, exact to 28
  digits; float for float input);
- ``count_distinct``: ``[set of values]``.

Number text (JSON's exact decimals, ``"12.50"``) counts as a Decimal in sum/avg/min/max.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from headrace.config import Measure
from headrace.errors import PoisonRecord

__all__ = ["SKIP", "MeasureAccumulator"]


_NUMERIC = ("sum", "avg", "min", "max")


def _number(text: str, function: str, argument: str) -> Any:
    """JSON carries decimals as text ("12.50"): read number text as an exact Decimal.

    ``sum``/``avg`` of text that is not a number is a PoisonRecord; ``min``/``max`` keep it as
    text (they also order strings)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        if function in ("min", "max"):
            return text
        raise PoisonRecord(f"{function}({argument}): {text[:40]!r} is not a number")
    return number


#: ``MeasureAccumulator.value`` of a record that adds nothing to the measure (a null argument)
SKIP: Any = object()


def _fold_count(acc: list[Any], _x: Any) -> None:
    acc[0] += 1


def _fold_sum(acc: list[Any], x: Any) -> None:
    total = acc[0]
    acc[0] = x if total is None else total + x


def _fold_min(acc: list[Any], x: Any) -> None:
    if acc[0] is None or x < acc[0]:
        acc[0] = x


def _fold_max(acc: list[Any], x: Any) -> None:
    if acc[0] is None or x > acc[0]:
        acc[0] = x


def _fold_avg(acc: list[Any], x: Any) -> None:
    total = acc[0]
    acc[0] = x if total is None else total + x
    acc[1] += 1


def _fold_count_distinct(acc: list[Any], x: Any) -> None:
    acc[0].add(x)


_FOLDS = {
    "count": _fold_count,
    "sum": _fold_sum,
    "min": _fold_min,
    "max": _fold_max,
    "avg": _fold_avg,
    "count_distinct": _fold_count_distinct,
}


class MeasureAccumulator:
    """Creates, updates and finishes the accumulator of one measure.

    Adding a record is two steps, so a caller can evaluate every measure of a record before
    it changes any accumulator (a record that fails changes nothing): ``value`` evaluates the
    record's argument (may raise), ``fold`` puts that value into an accumulator (never
    raises for a value ``value`` returned; ``SKIP`` must not be folded)."""

    def __init__(self, name: str, measure: Measure) -> None:
        self.name = name
        self.function = measure.function
        self.argument = measure.argument
        self.fold = _FOLDS[measure.function]

    def empty(self) -> list[Any]:
        """A new accumulator for a window and group with no records yet."""
        if self.function == "count":
            return [0]
        if self.function == "avg":
            return [None, 0]
        if self.function == "count_distinct":
            return [set()]
        return [None]

    def value(self, record: dict[str, Any]) -> Any:
        """What ``record`` adds to the measure, or ``SKIP`` (a null argument: SQL ignores
        it). Raises ``EvaluationError`` (a PoisonRecord) if the argument fails, or
        PoisonRecord for number text that is not a number in sum/avg."""
        argument = self.argument
        if argument is None:  # count()
            return True
        x = argument.evaluate(record)
        if x is None:
            return SKIP
        if isinstance(x, str) and self.function in _NUMERIC:
            return _number(x, self.function, argument.text)
        return x

    def add(self, acc: list[Any], record: dict[str, Any]) -> None:
        """Add one record (``value`` then ``fold``); raises like ``value``, changing nothing."""
        x = self.value(record)
        if x is not SKIP:
            self.fold(acc, x)

    def result(self, acc: list[Any]) -> Any:
        """The measure's value for a finished (or running) accumulator."""
        if self.function == "avg":
            total, n = acc
            if total is None or n == 0:
                return None
            if isinstance(total, float):
                return total / n
            return Decimal(total) / Decimal(n)
        if self.function == "count_distinct":
            return len(acc[0])
        return acc[0]
