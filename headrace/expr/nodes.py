"""The syntax tree the parser builds and the compiler turns into closures.

Every node records ``position`` (0-based offset of its operator, name or literal, where errors
point) and ``depth`` (1 for a leaf, else 1 + the deepest child), which the parser caps so that
compiling and evaluating never recurse deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "Binary",
    "Call",
    "Compare",
    "Field",
    "InList",
    "IsNull",
    "Literal",
    "Logical",
    "Node",
    "Unary",
]

#: The deepest tree (and the deepest parenthesis nesting) an expression may have.
MAX_DEPTH: Final = 100


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: int, Decimal, str, bool or None."""

    position: int
    depth: int
    value: Any


@dataclass(frozen=True, slots=True)
class Field:
    """A field reference; ``path`` has one name per dotted segment (``customer.tier``)."""

    position: int
    depth: int
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x``, ``+x`` or ``not x`` (``op`` is ``'-'``, ``'+'`` or ``'not'``)."""

    position: int
    depth: int
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """An arithmetic operator: ``op`` in ``+ - * / // % **``."""

    position: int
    depth: int
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare:
    """A comparison: ``op`` in ``== != < <= > >=`` (``=`` and ``<>`` are normalized)."""

    position: int
    depth: int
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logical:
    """``items[0] and items[1] and ...`` (``op`` ``'and'``) or the same with ``'or'``."""

    position: int
    depth: int
    op: str
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class InList:
    """``operand [not] in (items...)``."""

    position: int
    depth: int
    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class IsNull:
    """``operand is [not] null``."""

    position: int
    depth: int
    operand: Node
    negated: bool


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a whitelisted function; ``name`` is lower-case and known."""

    position: int
    depth: int
    name: str
    args: tuple[Node, ...]


Node = Literal | Field | Unary | Binary | Compare | Logical | InList | IsNull | Call
