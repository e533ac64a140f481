"""``Expression`` and ``compile_expression``: the public face of the expression language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from headrace.expr.compiler import Code, compile_tree
from headrace.expr.errors import EvaluationError, ExpressionError
from headrace.expr.parser import parse

__all__ = ["Expression", "compile_expression"]


@dataclass(frozen=True)
class Expression:
    """A compiled expression; build it with ``compile_expression``, evaluate it per record.

    ``text`` is the source, ``fields`` the top-level field names it reads (``customer`` for
    ``customer.tier``), for checking against a schema. Thread-safe and stateless; pickles as
    its text (and is compiled again on unpickling).
    """

    text: str
    fields: frozenset[str]
    _code: Code = field(repr=False, compare=False)

    def evaluate(self, record: Mapping[str, Any]) -> Any:
        """The value of the expression for ``record``: None, bool, int, Decimal, float, str,
        or a field's value. A missing field is null.

        Raises ``EvaluationError`` (a ``PoisonRecord``) for anything wrong with this record,
        never another exception, with ``text`` and the failing operator's ``position`` set.
        """
        if type(record) is not dict and not isinstance(record, Mapping):
            raise EvaluationError(
                f"a record must be a mapping (dict), got {type(record).__name__}", text=self.text
            )
        try:
            return self._code(record)
        except EvaluationError as exc:
            exc.text = self.text
            raise
        except Exception as exc:  # a record's own objects misbehaving: still one bad record
            raise EvaluationError(
                f"{type(exc).__name__} while evaluating: {exc}", text=self.text
            ) from exc

    def test(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` passes, for ``filter`` and ``having``: the value's truthiness,
        with null counting as false. Raises ``EvaluationError`` like ``evaluate``."""
        value = self.evaluate(record)
        if value is None or value is False:
            return False
        if value is True:
            return True
        try:
            return bool(value)
        except Exception as exc:
            raise EvaluationError(
                f"the result {type(value).__name__} has no truth value: {exc}", text=self.text
            ) from exc

    def __reduce__(self) -> tuple[Any, ...]:
        return (compile_expression, (self.text,))


def compile_expression(text: str) -> Expression:
    """Parse and compile ``text`` once; the result evaluates records fast and safely.

    Raises ``ExpressionError`` (a ``ValueError``) with the exact position for invalid syntax,
    unknown functions, wrong argument counts, names starting with ``__``, nesting deeper than
    100, text longer than 10,000 characters, lists after ``in`` that mix types, and constant
    parts beyond the size limits (``9 ** 9 ** 9``, ``10 ** 100000``).
    """
    if not isinstance(text, str):
        raise ExpressionError(
            f"an expression must be a string, got {type(text).__name__}",
            str(text),
            0,
            "quote it in the YAML file",
        )
    code, fields = compile_tree(parse(text), text)
    return Expression(text, fields, code)
