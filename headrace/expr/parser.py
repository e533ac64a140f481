"""A Pratt parser: tokens -> syntax tree (``nodes``), with exact error positions.

Precedence, loosest first (all binary operators are left-associative except ``**``)::

    or
    and
    not x                                  (prefix)
    == = != <> < <= > >=  [not] in  is [not] null   (non-associative: no chaining)
    + -
    * / // %
    -x +x                                  (prefix)
    **                                     (right-associative; -2**2 == -4, 2**-1 == 0.5)
    literal  field.path  `quoted`  function(args)  (expr)

Limits, each an ``ExpressionError``: the text is at most ``MAX_LENGTH`` characters; nesting
(parentheses, operators, calls) and tree depth are at most ``nodes.MAX_DEPTH``, so neither the
parser nor the compiled closures can exhaust the Python stack.
"""

from __future__ import annotations

from typing import Final

from headrace.expr.errors import ExpressionError
from headrace.expr.functions import FUNCTIONS, function_names
from headrace.expr.nodes import (
    MAX_DEPTH,
    Binary,
    Call,
    Compare,
    Field,
    InList,
    IsNull,
    Literal,
    Logical,
    Node,
    Unary,
)
from headrace.expr.tokens import Kind, Token, tokenize

__all__ = ["MAX_LENGTH", "parse"]

#: The longest expression text accepted, in characters.
MAX_LENGTH: Final = 10_000

# Binding powers.
_OR, _AND, _NOT, _COMPARE, _ADD, _MULTIPLY, _UNARY, _POWER = 10, 20, 30, 40, 50, 60, 70, 80

_OPERATOR_POWERS: Final = {
    "+": ("+", _ADD),
    "-": ("-", _ADD),
    "*": ("*", _MULTIPLY),
    "/": ("/", _MULTIPLY),
    "//": ("//", _MULTIPLY),
    "%": ("%", _MULTIPLY),
    "**": ("**", _POWER),
    "==": ("==", _COMPARE),
    "=": ("==", _COMPARE),
    "!=": ("!=", _COMPARE),
    "<>": ("!=", _COMPARE),
    "<": ("<", _COMPARE),
    "<=": ("<=", _COMPARE),
    ">": (">", _COMPARE),
    ">=": (">=", _COMPARE),
}
_KEYWORD_POWERS: Final = {
    "or": ("or", _OR),
    "and": ("and", _AND),
    "in": ("in", _COMPARE),
    "is": ("is", _COMPARE),
}
_A_VALUE: Final = "expected a value: a number, a string, a field, a function call or '('"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.nesting = -1  # the whole expression is level 0; each '(' adds one

    # -- helpers -------------------------------------------------------------------------

    def fail(self, message: str, position: int, hint: str | None = None) -> ExpressionError:
        return ExpressionError(message, self.text, position, hint)

    def unexpected(self, token: Token, expected: str) -> ExpressionError:
        if token.kind is Kind.END:
            return self.fail("unexpected end of expression", token.position, expected)
        if token.kind is Kind.KEYWORD and token.text == "not":
            expected = "did you mean 'not in' or 'is not null'?"
        return self.fail(f"unexpected {token.describe()}", token.position, expected)

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def at(self, kind: Kind, *texts: str) -> bool:
        token = self.peek()
        return token.kind is kind and token.text in texts

    def depth(self, position: int, *children: Node) -> int:
        depth = 1 + max((child.depth for child in children), default=0)
        if depth > MAX_DEPTH:
            raise self.too_deep(position)
        return depth

    def too_deep(self, position: int) -> ExpressionError:
        return self.fail(
            f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
            position,
            "simplify it or split it into several steps",
        )

    # -- grammar -------------------------------------------------------------------------

    def parse(self) -> Node:
        if self.peek().kind is Kind.END:
            raise self.fail("empty expression", 0, "write a formula such as: quantity > 0")
        node = self.expression(0)
        if self.peek().kind is not Kind.END:
            raise self.unexpected(self.peek(), "expected an operator or the end of the expression")
        return node

    def expression(self, min_power: int) -> Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            # Point at the '(' or operator that opened this level.
            raise self.too_deep(self.tokens[max(self.index - 1, 0)].position)
        try:
            left = self.prefix(min_power)
            compared = False
            while True:
                token = self.peek()
                infix = self.infix_operator(token)
                if infix is None or infix[1] <= min_power:
                    return left
                symbol, power = infix
                if power == _COMPARE and compared:
                    raise self.fail(
                        f"comparisons cannot be chained: {token.describe()}",
                        token.position,
                        "write 'a < b and b < c'",
                    )
                compared = power == _COMPARE
                left = self.infix(left, symbol, power)
        finally:
            self.nesting -= 1

    def infix_operator(self, token: Token) -> tuple[str, int] | None:
        if token.kind is Kind.OPERATOR:
            return _OPERATOR_POWERS.get(token.text)
        if token.kind is Kind.KEYWORD:
            if token.text == "not":
                following = self.peek(1)
                is_in = following.kind is Kind.KEYWORD and following.text == "in"
                return ("not in", _COMPARE) if is_in else None
            return _KEYWORD_POWERS.get(token.text)
        return None

    def infix(self, left: Node, symbol: str, power: int) -> Node:
        position = self.advance().position
        if symbol in ("and", "or"):
            right = self.expression(power)
            items = left.items if isinstance(left, Logical) and left.op == symbol else (left,)
            items = (*items, right)
            return Logical(position, self.depth(position, *items), symbol, items)
        if symbol in ("in", "not in"):
            if symbol == "not in":
                self.advance()
            values = self.list_items()
            depth = self.depth(position, left, *values)
            return InList(position, depth, left, values, symbol == "not in")
        if symbol == "is":
            negated = self.at(Kind.KEYWORD, "not")
            if negated:
                self.advance()
            if not self.at(Kind.KEYWORD, "null"):
                raise self.fail(
                    f"expected 'null' after 'is{' not' if negated else ''}', "
                    f"got {self.peek().describe()}",
                    self.peek().position,
                    "write 'x is null' or 'x is not null'; use == for other values",
                )
            self.advance()
            return IsNull(position, self.depth(position, left), left, negated)
        right = self.expression(power - 1 if symbol == "**" else power)
        depth = self.depth(position, left, right)
        if power == _COMPARE:
            return Compare(position, depth, symbol, left, right)
        return Binary(position, depth, symbol, left, right)

    def prefix(self, min_power: int) -> Node:
        token = self.advance()
        position = token.position
        if token.kind in (Kind.NUMBER, Kind.STRING):
            return Literal(position, 1, token.value)
        if token.kind is Kind.KEYWORD:
            constants = {"true": True, "false": False, "null": None}
            if token.text in constants:
                return Literal(position, 1, constants[token.text])
            if token.text == "not":
                if min_power > _NOT:
                    raise self.fail(
                        "'not' cannot appear here", position, "put it in parentheses: (not x)"
                    )
                operand = self.expression(_NOT)
                return Unary(position, self.depth(position, operand), "not", operand)
        elif token.kind is Kind.OPERATOR:
            if token.text == "(":
                node = self.expression(0)
                if not self.at(Kind.OPERATOR, ")"):
                    raise self.unexpected(
                        self.peek(), f"expected ')' to close the '(' at column {position + 1}"
                    )
                self.advance()
                return node
            if token.text in ("-", "+"):
                operand = self.expression(_UNARY)
                return Unary(position, self.depth(position, operand), token.text, operand)
            if token.text == "[":
                raise self.fail("a list is only allowed after 'in'", position, "x in [1, 2]")
        elif token.kind is Kind.NAME and self.at(Kind.OPERATOR, "("):
            return self.call(token)
        elif token.kind in (Kind.NAME, Kind.QUOTED_NAME):
            return self.field(token)
        raise self.unexpected(token, _A_VALUE)

    def field(self, first: Token) -> Field:
        path = [str(first.value)]
        while self.at(Kind.OPERATOR, "."):
            self.advance()
            segment = self.advance()
            if segment.kind not in (Kind.NAME, Kind.QUOTED_NAME, Kind.KEYWORD):
                raise self.unexpected(segment, "expected a field name after '.'")
            path.append(str(segment.value))
        if self.at(Kind.OPERATOR, "("):
            raise self.fail(
                f"field {'.'.join(path)!r} cannot be called",
                self.peek().position,
                f"only these functions can be called: {function_names()}",
            )
        return Field(first.position, 1, tuple(path))

    def call(self, name: Token) -> Call:
        function = FUNCTIONS.get(name.text.lower())
        if function is None:
            raise self.fail(
                f"unknown function {name.text!r}",
                name.position,
                f"functions are: {function_names()}",
            )
        self.advance()  # (
        args: list[Node] = []
        while not self.at(Kind.OPERATOR, ")"):
            if args:
                if not self.at(Kind.OPERATOR, ","):
                    raise self.unexpected(self.peek(), f"expected ',' or ')' in {function.name}()")
                self.advance()
            args.append(self.expression(0))
        self.advance()  # )
        count = len(args)
        low, high = function.min_args, function.max_args
        if count < low or (high is not None and count > high):
            raise self.fail(
                f"{function.name}() takes {function.arity_text()}, got {count}", name.position
            )
        return Call(name.position, self.depth(name.position, *args), function.name, tuple(args))

    def list_items(self) -> tuple[Node, ...]:
        opening = self.peek()
        closing = {"(": ")", "[": "]"}.get(opening.text) if opening.kind is Kind.OPERATOR else None
        if closing is None:
            raise self.unexpected(opening, "expected a list after 'in', such as (1, 2, 3)")
        self.advance()
        items: list[Node] = []
        while not self.at(Kind.OPERATOR, closing):
            if items:
                if not self.at(Kind.OPERATOR, ","):
                    raise self.unexpected(self.peek(), f"expected ',' or '{closing}' in the list")
                self.advance()
                if self.at(Kind.OPERATOR, closing):  # trailing comma
                    break
            items.append(self.expression(0))
        self.advance()
        return tuple(items)


def parse(text: str) -> Node:
    """Parse ``text`` into a syntax tree. Raises ``ExpressionError`` with the exact position."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters)",
            text,
            MAX_LENGTH,
            f"the limit is {MAX_LENGTH}; move large lists into a lookup stage",
        )
    return _Parser(text).parse()
