"""The safe expression language of pipeline files (``filter``, ``set``, ``having``).

    >>> expression = compile_expression("status != 'cancelled' and quantity > 0")
    >>> expression.test({"status": "paid", "quantity": 2})
    True
    >>> compile_expression("price * quantity").evaluate({"price": Decimal("9.99"), "quantity": 3})
    Decimal('29.97')

Texts are parsed once, at load time, by a hand-written tokenizer and Pratt parser (no ``eval``,
``exec``, ``compile`` or ``ast``), and compiled into nested closures. An expression can only read
record fields (indexing into mappings, never attributes) and call ``abs``, ``coalesce``,
``len``, ``lower``, ``round`` and ``upper``. Decimal literals and arithmetic stay exact; null
follows SQL. See ``parser`` for the grammar and precedence, ``arithmetic``, ``comparison``,
``logic`` and ``functions`` for the semantics.

Errors: ``ExpressionError`` (a ``ValueError``) at load time, with the exact position;
``EvaluationError`` (a ``headrace.errors.PoisonRecord``) for one record at run time.
"""

from headrace.expr.errors import EvaluationError, ExpressionError
from headrace.expr.expression import Expression, compile_expression

__all__ = ["EvaluationError", "Expression", "ExpressionError", "compile_expression"]
