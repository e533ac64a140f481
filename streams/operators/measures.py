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

__all__ = ["MeasureAccumulator"]


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


class MeasureAccumulator:
    """Creates, updates and finishes the accumulator of one measure."""

    def __init__(self, name: str, measure: Measure) -> None:
        self.name = name
        self.function = measure.function
        self.argument = measure.argument

    def empty(self) -> list[Any]:
        """A new accumulator for a window and group with no records yet."""
        if self.function == "count":
            return [0]
        if self.function == "avg":
            return [None, 0]
        if self.function == "count_distinct":
            return [set()]
        return [None]

    def add(self, acc: list[Any], value: dict[str, Any]) -> None:
        """Add one record; raises ``EvaluationError`` (a PoisonRecord) if the argument fails."""
        fn = self.function
        if self.argument is None:  # count()
            acc[0] += 1
            return
        x = self.argument.evaluate(value)
        if x is None:
            return
        if isinstance(x, str) and fn in _NUMERIC:
            x = _number(x, fn, self.argument.text)
        if fn == "count":
            acc[0] += 1
        elif fn == "sum":
            acc[0] = x if acc[0] is None else acc[0] + x
        elif fn == "min":
            if acc[0] is None or x < acc[0]:
                acc[0] = x
        elif fn == "max":
            if acc[0] is None or x > acc[0]:
                acc[0] = x
        elif fn == "avg":
            acc[0] = x if acc[0] is None else acc[0] + x
            acc[1] += 1
        else:  # count_distinct
            acc[0].add(x)

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
