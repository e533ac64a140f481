"""The tokenizer: expression text -> a list of ``Token``, ending with an ``END`` token.

Lexical rules:

- numbers: ``12`` (int), ``12.50``, ``1e3``, ``2.5E-2`` (``decimal.Decimal``, exact);
  at most 1000 characters, exponent within +/-999999.
- strings: ``'...'`` or ``"..."``; escapes ``\\\\ \\' \\" \\n \\r \\t \\0 \\uXXXX``; a doubled
  quote inside (``'it''s'``) is one quote, as in SQL.
- names: a letter or ``_``, then letters, digits, ``_``. The keywords ``and or not in is null
  true false`` are case-insensitive. Any other name is a field or a function.
- quoted names: ``\\`order-id\\``` for any field name; a doubled backtick inside is one.
- operators: ``( ) [ ] , . + - * / // % ** == = != <> < <= > >=``.

No name, quoted or not, may start with ``__``. Every error is an ``ExpressionError`` at the
exact offset of the offending character.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from headrace.expr.errors import ExpressionError

__all__ = ["KEYWORDS", "MAX_NUMBER_LENGTH", "Kind", "Token", "tokenize"]

KEYWORDS: Final = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
MAX_NUMBER_LENGTH: Final = 1000
_MAX_DECIMAL_EXPONENT: Final = 999_999

_OPERATORS_2: Final = frozenset({"//", "**", "==", "!=", "<>", "<=", ">="})
_OPERATORS_1: Final = frozenset("()[],.+-*/%=<>")
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_HINTS: Final = {
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not', or '!=' for inequality",
    ";": "an expression is a single formula",
    ":": "lambdas, slices and dicts are not supported",
    "{": "dicts and sets are not supported",
    "@": "decorators and matrix products are not supported",
}


class Kind(enum.Enum):
    """Token kinds."""

    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    QUOTED_NAME = "quoted name"
    KEYWORD = "keyword"
    OPERATOR = "operator"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    """One token. ``text`` is the source text (keywords lower-cased), ``value`` the literal
    value (int, Decimal, str) or the name, ``position`` the 0-based offset of its first
    character."""

    kind: Kind
    text: str
    value: Any
    position: int

    def describe(self) -> str:
        """How error messages name this token: ``name 'x'``, ``')'``, ``end of expression``."""
        if self.kind is Kind.END:
            return "end of expression"
        if self.kind in (Kind.OPERATOR, Kind.KEYWORD):
            return f"'{self.text}'"
        shown = self.text if len(self.text) <= 30 else self.text[:27] + "..."
        return f"{self.kind.value} {shown}" if self.kind is not Kind.NAME else f"name '{shown}'"


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9" and len(char) == 1


def _is_name_start(char: str) -> bool:
    return char == "_" or char.isalpha()


def _is_name_char(char: str) -> bool:
    return char == "_" or char.isalnum()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []

    def fail(self, message: str, position: int, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, self.text, position, hint)

    def run(self) -> list[Token]:
        text, index = self.text, 0
        while index < len(text):
            char = text[index]
            if char.isspace():
                index += 1
            elif _is_digit(char) or (char == "." and self.leading_dot(index)):
                index = self.number(index)
            elif char in "'\"":
                index = self.string(index)
            elif char == "`":
                index = self.quoted_name(index)
            elif _is_name_start(char):
                index = self.name(index)
            elif text[index : index + 2] in _OPERATORS_2:
                self.add(Kind.OPERATOR, text[index : index + 2], None, index)
                index += 2
            elif char in _OPERATORS_1:
                self.add(Kind.OPERATOR, char, None, index)
                index += 1
            else:
                raise self.fail(f"unexpected character {char!r}", index, _HINTS.get(char))
        self.add(Kind.END, "", None, len(text))
        return self.tokens

    def leading_dot(self, index: int) -> bool:
        """A '.' before a digit that does not follow a name: a number like .5."""
        after_name = bool(self.tokens) and self.tokens[-1].kind in (Kind.NAME, Kind.QUOTED_NAME)
        return _is_digit(self.text[index + 1 : index + 2]) and not after_name

    def add(self, kind: Kind, text: str, value: Any, position: int) -> None:
        self.tokens.append(Token(kind, text, value, position))

    def number(self, start: int) -> int:
        text, index = self.text, start
        if text[index] == ".":
            raise self.fail("a number must start with a digit", start, "write 0.5, not .5")
        while index < len(text) and _is_digit(text[index]):
            index += 1
        is_int = True
        if text[index : index + 1] == ".":
            if not _is_digit(text[index + 1 : index + 2]):
                raise self.fail("expected a digit after the decimal point", index + 1)
            is_int, index = False, index + 1
            while index < len(text) and _is_digit(text[index]):
                index += 1
        if text[index : index + 1] in ("e", "E"):
            mark = index + 1
            if text[mark : mark + 1] in ("+", "-"):
                mark += 1
            if not _is_digit(text[mark : mark + 1]):
                raise self.fail("expected the digits of an exponent", mark, "write e.g. 1e3")
            is_int, index = False, mark
            while index < len(text) and _is_digit(text[index]):
                index += 1
        if index < len(text) and (_is_name_char(text[index]) or text[index] == "."):
            raise self.fail(f"invalid number {text[start : index + 1]!r}", index)
        literal = text[start:index]
        if len(literal) > MAX_NUMBER_LENGTH:
            raise self.fail(
                f"number literal is {len(literal)} characters long",
                start,
                f"the limit is {MAX_NUMBER_LENGTH}",
            )
        value: int | Decimal = int(literal) if is_int else Decimal(literal)
        if isinstance(value, Decimal) and abs(value.adjusted()) > _MAX_DECIMAL_EXPONENT:
            raise self.fail(f"number {literal} is out of range", start)
        self.add(Kind.NUMBER, literal, value, start)
        return index

    def string(self, start: int) -> int:
        text, quote, index = self.text, self.text[start], start + 1
        parts: list[str] = []
        while True:
            if index >= len(text):
                raise self.fail("unterminated string", start, f"close it with {quote}")
            char = text[index]
            if char == quote:
                if text[index + 1 : index + 2] != quote:
                    break
                parts.append(quote)
                index += 2
            elif char == "\\":
                index = self.escape(index, parts)
            else:
                parts.append(char)
                index += 1
        self.add(Kind.STRING, text[start : index + 1], "".join(parts), start)
        return index + 1

    def escape(self, index: int, parts: list[str]) -> int:
        code = self.text[index + 1 : index + 2]
        if code in _ESCAPES:
            parts.append(_ESCAPES[code])
            return index + 2
        digits = self.text[index + 2 : index + 6]
        if code == "u" and len(digits) == 4 and set(digits) <= _HEX:
            parts.append(chr(int(digits, 16)))
            return index + 6
        raise self.fail(
            f"invalid escape sequence {self.text[index : index + 2]!r} in string",
            index,
            "valid escapes are \\\\ \\' \\\" \\n \\r \\t \\0 \\uXXXX",
        )

    def quoted_name(self, start: int) -> int:
        text, index = self.text, start + 1
        parts: list[str] = []
        while True:
            end = text.find("`", index)
            if end < 0:
                raise self.fail("unterminated quoted name", start, "close it with `")
            parts.append(text[index:end])
            if text[end + 1 : end + 2] != "`":
                break
            parts.append("`")
            index = end + 2
        name = "".join(parts)
        if not name:
            raise self.fail("empty quoted name", start)
        self.check_name(name, start)
        self.add(Kind.QUOTED_NAME, text[start : end + 1], name, start)
        return end + 1

    def name(self, start: int) -> int:
        text, index = self.text, start + 1
        while index < len(text) and _is_name_char(text[index]):
            index += 1
        name = text[start:index]
        if name.lower() in KEYWORDS:
            self.add(Kind.KEYWORD, name.lower(), name, start)
        else:
            self.check_name(name, start)
            self.add(Kind.NAME, name, name, start)
        return index

    def check_name(self, name: str, position: int) -> None:
        if name.startswith("__"):
            raise self.fail(
                f"names starting with '__' are not allowed: {name!r}",
                position,
                "expressions can only read record fields and call the listed functions",
            )


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; the last one has kind ``END``. Raises ``ExpressionError``."""
    return _Scanner(text).run()
