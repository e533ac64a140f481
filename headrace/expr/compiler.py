"""The compiler: syntax tree -> one Python closure ``code(record) -> value``.

Each node becomes a closure calling its children's closures, so evaluating an expression is a
few plain function calls per operator, with no tree walk, ``eval`` or ``exec``. Subtrees made only
of constants are computed here, once (constant folding). If that exceeds a size limit
(``9 ** 9 ** 9``, ``10 ** 100000``) the expression is rejected with an ``ExpressionError`` at the
operator; any other failure (``'a' + 1``, ``1 / 0``) is left to raise ``EvaluationError`` per
record, as the language defines type errors and division by zero as evaluation errors.

An ``EvaluationError`` raised at run time carries the ``position`` of the innermost operator or
function that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, cast

from headrace.expr.arithmetic import BINARY_OPERATORS, UNARY_OPERATORS
from headrace.expr.comparison import make_comparator, member_of, set_member_of
from headrace.expr.errors import EvaluationError, ExpressionError, LimitError
from headrace.expr.functions import FUNCTIONS
from headrace.expr.logic import logical, logical_values, negate_logic
from headrace.expr.nodes import (
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
from headrace.expr.values import kind_name

__all__ = ["Code", "Record", "compile_tree"]

Record = Mapping[str, Any]
Code = Callable[[Record], Any]


@dataclass(frozen=True, slots=True)
class _Constant:
    value: Any


_Compiled = Code | _Constant


def _code(compiled: _Compiled) -> Code:
    if isinstance(compiled, _Constant):
        value = compiled.value
        return lambda record: value
    return compiled


def _locate(exc: EvaluationError, position: int) -> EvaluationError:
    if exc.position is None:
        exc.position = position
    return exc


def _field_code(path: tuple[str, ...]) -> Code:
    if len(path) == 1:
        return cast(Code, methodcaller("get", path[0]))  # C speed: record.get(name)
    head, rest = path[0], path[1:]

    def get_path(record: Record) -> Any:
        value = record.get(head)
        for key in rest:
            # Only mappings are indexed: never an attribute of any other object.
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    return get_path


def _located(code: Code, position: int) -> Code:
    def run(record: Record) -> Any:
        try:
            return code(record)
        except EvaluationError as exc:
            raise _locate(exc, position) from None

    return run


def _apply1(fn: Callable[[Any], Any], operand: Code, position: int) -> Code:
    def run(record: Record) -> Any:
        try:
            return fn(operand(record))
        except EvaluationError as exc:
            raise _locate(exc, position) from None

    return run


def _apply2(fn: Callable[[Any, Any], Any], left: _Compiled, right: _Compiled, pos: int) -> Code:
    if isinstance(right, _Constant):
        constant, left_code = right.value, _code(left)

        def run_constant_right(record: Record) -> Any:
            try:
                return fn(left_code(record), constant)
            except EvaluationError as exc:
                raise _locate(exc, pos) from None

        return run_constant_right
    left_code, right_code = _code(left), right

    def run(record: Record) -> Any:
        try:
            return fn(left_code(record), right_code(record))
        except EvaluationError as exc:
            raise _locate(exc, pos) from None

    return run


def _apply_n(fn: Callable[..., Any], args: list[Code], position: int) -> Code:
    def run(record: Record) -> Any:
        try:
            return fn(*[arg(record) for arg in args])
        except EvaluationError as exc:
            raise _locate(exc, position) from None

    return run


def _coalesce(args: list[Code]) -> Code:
    def run(record: Record) -> Any:
        for arg in args:
            value = arg(record)
            if value is not None:
                return value
        return None

    return run


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.fields: set[str] = set()

    def fold(self, node: Node, fn: Callable[..., Any], *values: Any) -> _Constant | None:
        """``fn(*values)`` computed now; None if it fails (it then fails per record, as an
        ``EvaluationError``); an ``ExpressionError`` if it exceeds a size limit, so that
        ``9 ** 9 ** 9`` is refused at load time."""
        try:
            return _Constant(fn(*values))
        except LimitError as exc:
            raise ExpressionError(exc.message, self.text, node.position) from None
        except EvaluationError:
            return None

    def emit(self, node: Node) -> _Compiled:
        if isinstance(node, Literal):
            return _Constant(node.value)
        if isinstance(node, Field):
            self.fields.add(node.path[0])
            return _field_code(node.path)
        if isinstance(node, Unary):
            fn = negate_logic if node.op == "not" else UNARY_OPERATORS[node.op]
            return self.apply(node, fn, [node.operand])
        if isinstance(node, Binary):
            return self.apply(node, BINARY_OPERATORS[node.op], [node.left, node.right])
        if isinstance(node, Compare):
            return self.apply(node, make_comparator(node.op), [node.left, node.right])
        if isinstance(node, IsNull):
            negated = node.negated
            return self.apply(node, lambda value: (value is None) is not negated, [node.operand])
        if isinstance(node, Logical):
            return self.logical(node)
        if isinstance(node, InList):
            return self.in_list(node)
        return self.call(node)

    def apply(self, node: Node, fn: Callable[..., Any], operands: list[Node]) -> _Compiled:
        compiled = [self.emit(operand) for operand in operands]
        if all(isinstance(item, _Constant) for item in compiled):
            folded = self.fold(node, fn, *[cast(_Constant, item).value for item in compiled])
            if folded is not None:
                return folded
        if len(compiled) == 1:
            return _apply1(fn, _code(compiled[0]), node.position)
        if len(compiled) == 2:
            return _apply2(fn, compiled[0], compiled[1], node.position)
        return _apply_n(fn, [_code(item) for item in compiled], node.position)

    def logical(self, node: Logical) -> _Compiled:
        items = [self.emit(item) for item in node.items]
        if all(isinstance(item, _Constant) for item in items):
            values = [cast(_Constant, item).value for item in items]
            return _Constant(logical_values(node.op, values))
        return logical(node.op, [_code(item) for item in items])

    def in_list(self, node: InList) -> _Compiled:
        items = [self.emit(item) for item in node.items]
        if not all(isinstance(item, _Constant) for item in items):
            operand = _code(self.emit(node.operand))
            codes = [_code(item) for item in items]

            def scan(record: Record) -> bool | None:
                return member_of(operand(record), [code(record) for code in codes])

            test: _Compiled = _located(scan, node.position)
        else:
            values = tuple(cast(_Constant, item).value for item in items)
            test = self.apply(node, self.constant_membership(node, values), [node.operand])
        if not node.negated:
            return test
        if isinstance(test, _Constant):
            return _Constant(negate_logic(test.value))
        return _apply1(negate_logic, test, node.position)

    def constant_membership(
        self, node: InList, values: tuple[Any, ...]
    ) -> Callable[[Any], bool | None]:
        kinds = {kind_name(value) for value in values if value is not None}
        if len(kinds) > 1:
            raise ExpressionError(
                f"the list after 'in' mixes {' and '.join(sorted(kinds))} values",
                self.text,
                node.position,
                "a value can only equal items of its own type",
            )
        kind = kinds.pop() if kinds else "null"
        if kind not in ("string", "number"):
            return lambda value: member_of(value, values)
        members = frozenset(value for value in values if value is not None)
        has_null = None in values
        return lambda value: set_member_of(value, members, kind, has_null, values)

    def call(self, node: Call) -> _Compiled:
        function = FUNCTIONS[node.name]
        if not function.lazy:
            return self.apply(node, function.impl, list(node.args))
        args = [self.emit(arg) for arg in node.args]
        if all(isinstance(arg, _Constant) for arg in args):
            return _Constant(function.impl(*[cast(_Constant, arg).value for arg in args]))
        return _coalesce([_code(arg) for arg in args])


def compile_tree(tree: Node, text: str) -> tuple[Code, frozenset[str]]:
    """Compile ``tree`` (parsed from ``text``) into ``(code, fields)``: the closure and the
    top-level field names it reads. Raises ``ExpressionError`` for a constant part beyond a size
    limit and for a constant list after ``in`` that mixes types (``x in (1, 'a')``)."""
    compiler = _Compiler(text)
    code = _code(compiler.emit(tree))
    return code, frozenset(compiler.fields)
