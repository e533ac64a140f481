"""The two errors of the expression language.

- ``ExpressionError`` (a ``ValueError``): the text is not a valid expression. Raised once, at
  load time, by ``compile_expression``; it carries the exact 0-based ``position`` of the problem,
  so ``str(err)`` points a caret at it. Being a ``ValueError``, it becomes a normal validation
  error inside pydantic validators.
- ``EvaluationError`` (a ``PoisonRecord``): one record cannot be evaluated (a type mismatch,
  division by zero, a result too large). The record goes to the dead-letter topic and the
  pipeline carries on.
"""

from __future__ import annotations

from typing import Any

from headrace.errors import PoisonRecord

__all__ = ["EvaluationError", "ExpressionError", "LimitError"]

_SNIPPET_WIDTH = 72


class ExpressionError(ValueError):
    """``text`` is not a valid expression; ``position`` is the 0-based offset of the problem.

    ``message`` says what is wrong, ``hint`` (optional) how to fix it. ``line`` and ``column``
    are 1-based. ``str(err)`` is ``"<message> at column <n>[; <hint>]"`` followed by the
    offending line and a caret under the position.
    """

    def __init__(self, message: str, text: str, position: int, hint: str | None = None) -> None:
        self.message = message
        self.text = text
        self.position = max(0, min(position, len(text)))
        self.hint = hint
        super().__init__(message)

    @property
    def line(self) -> int:
        """1-based line number of ``position``."""
        return self.text.count("\n", 0, self.position) + 1

    @property
    def column(self) -> int:
        """1-based column of ``position`` within its line."""
        return self.position - (self.text.rfind("\n", 0, self.position) + 1) + 1

    def __str__(self) -> str:
        where = f"column {self.column}"
        if "\n" in self.text:
            where = f"line {self.line}, {where}"
        head = f"{self.message} at {where}"
        if self.hint:
            head += f"; {self.hint}"
        return f"{head}\n{self._snippet()}"

    def _snippet(self) -> str:
        """The line holding ``position`` (windowed if long) and a caret line under it."""
        start = self.text.rfind("\n", 0, self.position) + 1
        end = self.text.find("\n", self.position)
        line = self.text[start : len(self.text) if end < 0 else end]
        caret = self.position - start
        if len(line) > _SNIPPET_WIDTH:
            full = len(line)
            left = max(0, min(caret - _SNIPPET_WIDTH // 2, full - _SNIPPET_WIDTH))
            line = line[left : left + _SNIPPET_WIDTH]
            caret -= left
            if left > 0:
                line, caret = "..." + line, caret + 3
            if left + _SNIPPET_WIDTH < full:
                line += "..."
        line = line.replace("\t", " ")
        return f"    {line}\n    {' ' * caret}^"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.text, self.position, self.hint))


class EvaluationError(PoisonRecord):
    """One record could not be evaluated; it belongs in the dead-letter topic.

    ``message`` says what failed with which values; ``position`` (0-based, if known) is the
    operator or function that failed and ``text`` the expression, both filled in on the way out
    of ``Expression.evaluate``.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        text: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.position = position
        self.text = text
        super().__init__(message, field=field)

    def __str__(self) -> str:
        out = self.message
        if self.position is not None:
            out += f" at column {self.position + 1}"
        if self.text is not None:
            out += f" of expression {self.text!r}"
        return out


class LimitError(EvaluationError):
    """An operand or result beyond the language's size limits (``**`` exponent above 1000, an
    integer above 8192 bits). In a constant part of an expression it is a parse error."""
