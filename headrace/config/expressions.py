"""Expressions in the pipeline file, compiled once at load time.

``ExpressionText`` is the annotated type of every expression-valued key (``filter``, ``set``
values, ``having``); measure arguments use ``compile_config_expression``. Validation compiles the
text with ``headrace.expr.compile_expression`` and the model holds the resulting
``headrace.expr.Expression`` (``.evaluate(record)``, ``.test(record)``, ``.text``, ``.fields``);
it serializes back to its text. A syntax error becomes a config problem naming the column (and
line, for multi-line text) and the expression, so the loader reports e.g.
``stages.clean_orders.transform[0].filter: invalid expression at column 8: ...``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import PlainSerializer, PlainValidator

from headrace.config.base import TypeLabel, problem
from headrace.config.redact import redact_text
from headrace.expr import Expression, ExpressionError, compile_expression

__all__ = ["ExpressionText", "compile_config_expression"]


def _where(text: str, position: int) -> str:
    position = max(0, min(position, len(text)))
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    if "\n" in text:
        return f"line {text.count(chr(10), 0, position) + 1}, column {column}"
    return f"column {column}"


def compile_config_expression(
    text: str, *, column_offset: int = 0, shown: str | None = None
) -> Expression:
    """Compile ``text``; raise a config problem naming the column on a syntax error.

    ``text`` may be part of a larger value ``shown`` starting at ``column_offset`` (0-based), as
    the argument of the measure ``sum(price * quantity)``; positions then refer to ``shown``.
    """
    try:
        return compile_expression(text)
    except ExpressionError as exc:
        full = shown if shown is not None else text
        position = exc.position if isinstance(exc.position, int) else 0
        hint = getattr(exc, "hint", None)
        what = redact_text(f"{exc.message}; {hint}" if hint else str(exc.message))
        raise problem(
            f"invalid expression at {_where(full, column_offset + position)}: {what} "
            f"(in {redact_text(full)!r})"
        ) from None


def _validate(value: object) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise problem(f"expected an expression as a string, got {type(value).__name__}")
    if not value.strip():
        raise problem("expression must not be empty")
    return compile_config_expression(value)


def _serialize(value: Expression) -> str:
    return value.text


ExpressionText = Annotated[
    Expression,
    PlainValidator(_validate),
    PlainSerializer(_serialize, return_type=str),
    TypeLabel("expression"),
]
"""An expression string, compiled at validation; serializes back to its text."""
