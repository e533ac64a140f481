"""Config problems and their translation from pydantic's ``ValidationError``.

A ``Problem`` is one line of a config error: a dotted key path (``sources.orders_db.mode``, list
items as ``transform[0]``) and a message. ``PipelineConfigError`` is the ``ConfigError`` the loader
raises: ``str(err)`` is one line per problem, each ``<file>: <key path>: <message>``.
``problems_from_validation`` turns every pydantic error into such a line, with our own wording:
enum choices, unknown keys with a did-you-mean suggestion, source/sink ``type`` problems.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from inspect import isclass
from typing import Annotated, Any, Literal, TypeGuard, get_args, get_origin

from pydantic import BaseModel, ValidationError

from headrace.config.redact import redact_text
from headrace.errors import ConfigError

__all__ = [
    "PipelineConfigError",
    "Problem",
    "format_path",
    "problems_from_validation",
]

PathPart = str | int
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_+-]+$")
_QUOTED_RE = re.compile(r"'([^']*)'")


def format_path(parts: Iterable[PathPart]) -> str:
    """Render a key path: ``sources.orders_db.mode``, ``transform[0]``, ``client["ssl.ca"]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config file: where (``key``, dotted path, may be empty) and what."""

    key: str
    message: str

    def render(self, file: str | None) -> str:
        """``<file>: <key>: <message>``, leaving out what is unknown."""
        head = "".join(f"{part}: " for part in (file, self.key) if part)
        return head + self.message


class PipelineConfigError(ConfigError):
    """A ``ConfigError`` listing one or more problems, one per line in ``str(err)``.

    ``problems`` holds them all; ``key``/``message`` are those of the first.
    """

    def __init__(self, problems: Sequence[Problem], *, path: str | None = None) -> None:
        if not problems:
            raise ValueError("PipelineConfigError needs at least one problem")
        first = problems[0]
        super().__init__(first.message, path=path, key=first.key or None)
        self.problems = tuple(problems)
        self.args = ("\n".join(p.render(path) for p in self.problems),)


def _strip(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _strip(tp)
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [_strip(a) for a in get_args(tp) if a is not type(None)]
    return [tp]


def _is_model(tp: Any) -> TypeGuard[type[BaseModel]]:
    return isclass(tp) and issubclass(tp, BaseModel)


def _tag(model: Any) -> str | None:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    values = get_args(field.annotation)
    return str(values[0]) if len(values) == 1 else None


def union_tags(tp: Any) -> list[str]:
    """The ``type`` tags of a discriminated union of models (empty if ``tp`` is not one)."""
    tags = [_tag(m) for m in _members(tp) if _is_model(m)]
    return [t for t in tags if t is not None] if len(tags) > 1 else []


def _field_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


@dataclass
class _Located:
    parts: list[PathPart]
    parent: type[BaseModel] | None
    leaf: Any
    key_error: bool = False


def _locate(root: type[BaseModel], loc: Sequence[PathPart]) -> _Located:
    """Follow pydantic's ``loc`` through the model types, dropping union tags."""
    parts: list[PathPart] = []
    parent: type[BaseModel] | None = None
    tp: Any = root
    key_error = False
    for elem in loc:
        candidates = _members(tp) if tp is not None else []
        if len(candidates) > 1:
            tagged = [m for m in candidates if _is_model(m) and _tag(m) == elem]
            tp = tagged[0] if tagged else None
            continue
        current = candidates[0] if candidates else None
        origin = get_origin(current)
        if _is_model(current):
            parent = current
            tp = None
            for name, field in current.model_fields.items():
                if elem in (name, field.alias):
                    elem = field.alias or name
                    tp = field.annotation
                    break
            parts.append(elem)
        elif origin is dict or origin is Mapping:
            if elem == "[key]":
                key_error = True
                continue
            parts.append(elem)
            tp = get_args(current)[1] if get_args(current) else None
        elif origin is list or origin is tuple:
            parts.append(elem)
            tp = get_args(current)[0] if get_args(current) else None
        else:
            if elem == "[key]":
                key_error = True
                continue
            parts.append(elem)
            tp = None
    return _Located(parts=parts, parent=parent, leaf=tp, key_error=key_error)


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = redact_text(value)
        return repr(text if len(text) <= 80 else text[:77] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _choices(expected: str) -> str:
    found = _QUOTED_RE.findall(expected)
    return ", ".join(found) if found else expected


def _unknown_key(elem: PathPart, parent: type[BaseModel] | None) -> str:
    if parent is None:
        return "unknown key"
    allowed = _field_keys(parent)
    close = difflib.get_close_matches(str(elem), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed: {', '.join(allowed)})"


def _bound(ctx: Mapping[str, Any], name: str) -> str:
    value = ctx.get(name)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


def _message(err: Mapping[str, Any], found: _Located) -> list[tuple[list[PathPart], str]]:
    kind = str(err["type"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    parts = found.parts
    if kind == "headrace":
        out: list[tuple[list[PathPart], str]] = []
        for key, message in ctx.get("problems") or [(None, str(ctx.get("message", "")))]:
            extra: list[PathPart] = []
            if isinstance(key, str):
                extra = [key]
            elif isinstance(key, tuple):
                extra = list(key)
            out.append(([*parts, *extra], str(message)))
        return out
    if kind == "missing":
        return [(parts, "missing required key")]
    if kind == "extra_forbidden":
        return [(parts, _unknown_key(parts[-1] if parts else "", found.parent))]
    if kind == "literal_error":
        choices = _choices(str(ctx.get("expected", "")))
        if isinstance(value, str):
            return [(parts, f"{_show(value)} is not one of {choices}")]
        return [(parts, f"expected one of {choices}, got {_show(value)}")]
    if kind == "union_tag_invalid":
        choices = _choices(str(ctx.get("expected_tags", "")))
        tag = value.get("type") if isinstance(value, Mapping) else ctx.get("tag")
        return [([*parts, "type"], f"{_show(tag)} is not one of {choices}")]
    if kind == "union_tag_not_found":
        choices = ", ".join(union_tags(found.leaf)) or "the known types"
        return [([*parts, "type"], f"missing required key (one of {choices})")]
    if kind in _TYPE_WORDS:
        return [(parts, f"expected {_TYPE_WORDS[kind]}, got {_show(value)}")]
    if kind == "greater_than":
        return [(parts, f"must be greater than {_bound(ctx, 'gt')}, got {_show(value)}")]
    if kind == "greater_than_equal":
        return [(parts, f"must be at least {_bound(ctx, 'ge')}, got {_show(value)}")]
    if kind == "less_than":
        return [(parts, f"must be less than {_bound(ctx, 'lt')}, got {_show(value)}")]
    if kind == "less_than_equal":
        return [(parts, f"must be at most {_bound(ctx, 'le')}, got {_show(value)}")]
    if kind in ("too_short", "string_too_short"):
        least = int(ctx.get("min_length", 1))
        unit = "characters" if kind == "string_too_short" else "items"
        text = "must not be empty" if least == 1 else f"needs at least {least} {unit}"
        return [(parts, text)]
    if kind in ("too_long", "string_too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        return [(parts, f"must have at most {ctx.get('max_length')} {unit}")]
    message = redact_text(str(err.get("msg", kind)))
    return [(parts, message.removeprefix("Value error, "))]


def problems_from_validation(exc: ValidationError, root: type[BaseModel]) -> list[Problem]:
    """Every error in ``exc`` (raised validating ``root``) as a ``Problem``, in order, no repeats.

    Messages show input values redacted (``redact_text``), never pydantic's input dump.
    """
    seen: set[Problem] = set()
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        if err["type"] == "default_factory_not_called":
            continue  # follows from another error on the same model
        found = _locate(root, err["loc"])
        for parts, message in _message(err, found):
            item = Problem(key=format_path(parts), message=message)
            if item not in seen:
                seen.add(item)
                out.append(item)
    return out
