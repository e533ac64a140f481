"""Three-valued logic for ``and``, ``or`` and ``not`` (SQL semantics over truthiness).

An operand is null (unknown) if it is None, otherwise true or false by Python truthiness
(``0``, ``''`` and empty lists are false). Results are always ``True``, ``False`` or ``None``:

- ``and``: false if any operand is false, else null if any is null, else true;
- ``or``: true if any operand is true, else null if any is null, else false;
- ``not``: null stays null.

Evaluation short-circuits left to right: ``and`` stops at the first false operand, ``or`` at the
first true one; a null operand does not stop it (``null and false`` is false).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["logical", "logical_values", "negate_logic"]

Code = Callable[[Mapping[str, Any]], Any]


def negate_logic(value: Any) -> bool | None:
    """``not value``; null stays null."""
    return None if value is None else not value


def logical_values(op: str, values: Sequence[Any]) -> bool | None:
    """``values[0] <op> values[1] <op> ...`` for already computed values (``op``: and/or)."""
    unknown = False
    decisive = op == "or"  # the truth value that decides the result on its own
    for value in values:
        if value is None:
            unknown = True
        elif bool(value) is decisive:
            return decisive
    return None if unknown else not decisive


def _and2(first: Code, second: Code) -> Code:
    def run(record: Mapping[str, Any]) -> bool | None:
        left = first(record)
        if left is not None and not left:
            return False
        right = second(record)
        if right is not None and not right:
            return False
        return None if left is None or right is None else True

    return run


def _or2(first: Code, second: Code) -> Code:
    def run(record: Mapping[str, Any]) -> bool | None:
        left = first(record)
        if left:
            return True
        right = second(record)
        if right:
            return True
        return None if left is None or right is None else False

    return run


def logical(op: str, codes: Sequence[Code]) -> Code:
    """The short-circuiting closure for ``codes[0] <op> codes[1] <op> ...``."""
    if len(codes) == 2:
        return (_and2 if op == "and" else _or2)(codes[0], codes[1])
    decisive = op == "or"
    items = tuple(codes)

    def run(record: Mapping[str, Any]) -> bool | None:
        unknown = False
        for code in items:
            value = code(record)
            if value is None:
                unknown = True
            elif bool(value) is decisive:
                return decisive
        return None if unknown else not decisive

    return run
