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
from dataclasses import dataclass
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
"""A hook step: the values of the step before -> the values it returns."""
One = Callable[[Value], Value | None]
"""Any other step: one value -> one value, or None to drop it (a filter)."""
Copy = Callable[[Value], Value]
Chain = list[tuple[str, One | None, Step | None]]
"""(label, one, hook): exactly one of the two functions is set."""

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
    """Compiled transform steps; stateless per record, safe to share within one thread.

    Each step is compiled once into a function of one value (a hook into one of a value that
    returns a list). A record goes through all of them in one loop: no list per step, and at
    most one copy of the value (made by the first step that changes it, and again after a
    hook, whose results may be the user's own objects); ``apply(value, owned=True)`` skips
    even that copy when the caller hands the value over.
    """

    def __init__(self, steps: Sequence[TransformStep], *, schemas_dir: Path | None = None) -> None:
        compiled = [
            (f"transform[{i}] {s.kind}", s.kind, self._compile(s, schemas_dir))
            for i, s in enumerate(steps)
        ]
        self._chains = {owned: _chain(compiled, owned) for owned in (False, True)}
        self._simple = all(many is None for _, _, many in self._chains[False])

    def apply(self, value: Value, *, owned: bool = False) -> list[Value]:
        """Output values for one input value (possibly none); PoisonRecord on a bad record.

        ``value`` is left as it is, unless ``owned``: the caller hands it over (e.g. freshly
        decoded) and steps may change it in place."""
        chain = self._chains[owned]
        if not self._simple:
            return self._apply_all(chain, value)
        label = ""
        try:
            for label, one, _ in chain:  # noqa: B007 (label names the step that raised)
                out = one(value)  # type: ignore[misc]
                if out is None:
                    return []
                value = out
        except PoisonRecord as exc:
            raise PoisonRecord(f"{label}: {exc}", field=exc.field) from exc
        except Exception as exc:
            raise PoisonRecord(f"{label}: {type(exc).__name__}: {exc}") from exc
        return [value]

    @staticmethod
    def _apply_all(chain: Chain, value: Value) -> list[Value]:
        values = [value]
        for label, one, many in chain:
            try:
                if many is not None:
                    values = many(values)
                else:
                    assert one is not None
                    values = [out for v in values if (out := one(v)) is not None]
            except PoisonRecord as exc:
                raise PoisonRecord(f"{label}: {exc}", field=exc.field) from exc
            except Exception as exc:
                raise PoisonRecord(f"{label}: {type(exc).__name__}: {exc}") from exc
            if not values:
                break
        return values

    @staticmethod
    def _compile(step: TransformStep, schemas_dir: Path | None) -> Compiled:
        """``step`` as a function of one value (of a list of values for a hook); a step that
        changes values is compiled twice: copying first, and in place (for owned values)."""
        kind = step.kind
        if kind == "python":
            return _hook_step(step)
        if kind == "filter":
            assert step.filter is not None
            test = step.filter.test
            return lambda v: v if test(v) else None
        if kind == "set":
            items = [(name, e.evaluate) for name, e in (step.set or {}).items()]
            return _changing(lambda copy: _set_fields(items, copy))
        if kind == "rename":
            mapping = dict(step.rename or {})
            return lambda v: {mapping.get(k, k): x for k, x in v.items()}
        if kind == "drop":
            gone = set(step.drop or [])
            return lambda v: {k: x for k, x in v.items() if k not in gone}
        if kind == "cast":
            casts = list((step.cast or {}).items())
            return _changing(lambda copy: _cast_fields(casts, copy))
        return _validator(str(step.validate_), schemas_dir)


@dataclass(frozen=True)
class _Changing:
    """A step that changes its value: ``copying`` for a value that is not ours yet,
    ``in_place`` for one that is."""

    copying: One
    in_place: One


Compiled = One | Step | _Changing


def _changing(build: Callable[[Copy], One]) -> _Changing:
    return _Changing(build(dict), build(_same))


def _same(value: Value) -> Value:
    return value


def _chain(compiled: list[tuple[str, str, Compiled]], owned: bool) -> Chain:
    """The steps for a first value that is ``owned`` (ours to change) or not."""
    chain: Chain = []
    for label, kind, fn in compiled:
        if kind == "python":
            chain.append((label, None, fn))  # type: ignore[arg-type]
            owned = False  # a hook may return objects it keeps: copy before changing them
        elif isinstance(fn, _Changing):
            chain.append((label, fn.in_place if owned else fn.copying, None))
            owned = True
        else:
            chain.append((label, fn, None))  # type: ignore[arg-type]
            owned = owned or kind in ("rename", "drop")  # new dicts
    return chain


def _set_fields(items: Sequence[tuple[str, Callable[[Value], Any]]], copy: Copy) -> One:
    def set_fields(v: Value) -> Value:
        computed = [(name, evaluate(v)) for name, evaluate in items]  # all from v as it was
        v = copy(v)
        for name, x in computed:
            v[name] = x
        return v

    return set_fields


def _cast_fields(casts: Sequence[tuple[str, str]], copy: Copy) -> One:
    def cast_fields(v: Value) -> Value:
        v = copy(v)
        for name, to in casts:
            if name in v:
                try:
                    v[name] = cast_value(v[name], to)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise PoisonRecord(
                        f"field {name!r}: cannot cast to {to}: {exc}", field=name
                    ) from None
        return v

    return cast_fields


def _hook_step(step: TransformStep) -> Step:
    hook = load_hook(str(step.python))
    ref = step.python
    return lambda vs: [out for v in vs for out in _hook_output(hook(v), ref)]


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


def _validator(name: str, schemas_dir: Path | None) -> One:
    import fastavro
    from fastavro.validation import ValidationError, validate

    path = (schemas_dir or Path("schemas")) / f"{name}.avsc"
    try:
        schema = fastavro.parse_schema(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise ConfigError(
            f"validate: schema file {str(path)!r} not found; set schemas.dir or add {name}.avsc"
        ) from None

    def check(v: Value) -> Value:
        try:
            validate(v, schema, raise_errors=True)
        except ValidationError as exc:
            raise PoisonRecord(f"does not match schema {name!r}: {exc}") from None
        return v

    return check
