"""The ``transform`` steps of a stage, compiled once, applied per record.

``Transformer(steps, schemas_dir=...)`` turns a record value into zero or more values:

- ``filter``: keep when the expression is true (null is false);
- ``set``: computed fields, evaluated against the record *before* this step (so ``set: {a: b,
  b: a}`` swaps);
- ``rename`` / ``drop``: missing fields are ignored;
- ``cast``: str, int, float, decimal, bool, timestamp (ISO-8601 text or epoch ms -> aware
  UTC ``datetime``), date; null stays null;
- ``validate``: the value must match ``<schemas_dir>/<name>.avsc`` (fastavro's validator);
- ``python: module:function``: a user hook returning a dict, a list of dicts, or None (drop).

``apply(value)`` returns the output values. Anything wrong with one record raises
``PoisonRecord`` naming the step (``transform[2] cast``) and the cause; the caller sends the
record to the DLQ and carries on. A hook that raises anything (except BaseException like
KeyboardInterrupt) is such a PoisonRecord: it never kills the worker. A wrong *configuration*
(hook not importable, schema file missing) raises ``ConfigError`` at construction.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from headrace.config import TransformStep
from headrace.errors import ConfigError, PoisonRecord

__all__ = ["Transformer", "cast_value", "load_hook"]

Value = dict[str, Any]
Step = Callable[[list[Value]], list[Value]]

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def cast_value(value: Any, to: str) -> Any:
    """``value`` converted to ``to``; ValueError says why not. Null stays null."""
    if value is None:
        return None
    if to == "str":
        return value if isinstance(value, str) else str(value)
    if to == "int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float | Decimal) and value != int(value):
            raise ValueError(f"{value!r} has a fraction")
        return int(value)
    if to == "float":
        return float(value)
    if to == "decimal":
        try:
            return Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    if to == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (true/false/yes/no/1/0)")
    if to == "timestamp":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        parsed = datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if to == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        return date.fromisoformat(str(value)[:10])
    raise ValueError(f"unknown cast type {to!r}")


def load_hook(ref: str) -> Callable[[Value], Any]:
    """Import ``module:function``; ConfigError names what is missing."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"python hook {ref!r}: cannot import module {module_name!r} ({exc}); "
            "check it is installed or on PYTHONPATH"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"python hook {ref!r}: module {module_name!r} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


class Transformer:
    """Compiled transform steps; stateless per record, safe to share within one thread."""

    def __init__(self, steps: Sequence[TransformStep], *, schemas_dir: Path | None = None) -> None:
        self._steps: list[tuple[str, Step]] = [
            (f"transform[{i}] {s.kind}", self._compile(s, schemas_dir)) for i, s in enumerate(steps)
        ]

    def apply(self, value: Value) -> list[Value]:
        """Output values for one input value (possibly none); PoisonRecord on a bad record."""
        values = [value]
        for label, step in self._steps:
            try:
                values = step(values)
            except PoisonRecord as exc:
                raise PoisonRecord(f"{label}: {exc}", field=exc.field) from exc
            except Exception as exc:
                raise PoisonRecord(f"{label}: {type(exc).__name__}: {exc}") from exc
            if not values:
                break
        return values

    def _compile(self, step: TransformStep, schemas_dir: Path | None) -> Step:
        kind = step.kind
        if kind == "filter":
            expr = step.filter
            assert expr is not None
            return lambda vs: [v for v in vs if expr.test(v)]
        if kind == "set":
            items = list((step.set or {}).items())

            def set_fields(vs: list[Value]) -> list[Value]:
                out = []
                for v in vs:
                    computed = {name: e.evaluate(v) for name, e in items}
                    out.append({**v, **computed})
                return out

            return set_fields
        if kind == "rename":
            mapping = dict(step.rename or {})
            return lambda vs: [{mapping.get(k, k): x for k, x in v.items()} for v in vs]
        if kind == "drop":
            gone = set(step.drop or [])
            return lambda vs: [{k: x for k, x in v.items() if k not in gone} for v in vs]
        if kind == "cast":
            casts = list((step.cast or {}).items())

            def cast_fields(vs: list[Value]) -> list[Value]:
                out = []
                for v in vs:
                    v = dict(v)
                    for name, to in casts:
                        if name in v:
                            try:
                                v[name] = cast_value(v[name], to)
                            except (ValueError, TypeError, OverflowError) as exc:
                                raise PoisonRecord(
                                    f"field {name!r}: cannot cast to {to}: {exc}", field=name
                                ) from None
                    out.append(v)
                return out

            return cast_fields
        if kind == "validate":
            return _validator(str(step.validate_), schemas_dir)
        hook = load_hook(str(step.python))
        return lambda vs: [out for v in vs for out in _hook_output(hook(v), step.python)]


def _hook_output(result: Any, ref: Any) -> list[Value]:
    if result is None:
        return []
    if isinstance(result, dict):
        return [result]
    if isinstance(result, list) and all(isinstance(r, dict) for r in result):
        return result
    raise PoisonRecord(
        f"hook {ref} returned {type(result).__name__}; it must return a dict, a list of "
        "dicts, or None"
    )


def _validator(name: str, schemas_dir: Path | None) -> Step:
    import fastavro
    from fastavro.validation import ValidationError, validate

    path = (schemas_dir or Path("schemas")) / f"{name}.avsc"
    try:
        schema = fastavro.parse_schema(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise ConfigError(
            f"validate: schema file {str(path)!r} not found; set schemas.dir or add {name}.avsc"
        ) from None

    def check(vs: list[Value]) -> list[Value]:
        for v in vs:
            try:
                validate(v, schema, raise_errors=True)
            except ValidationError as exc:
                raise PoisonRecord(f"does not match schema {name!r}: {exc}") from None
        return vs

    return check
