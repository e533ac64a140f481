"""The configuration reference, generated from the models.

``iter_config_keys()`` yields ``(key path, type, description)`` for every key of the pipeline
file, parents before children, in declaration order. Path conventions:

- ``<name>`` stands for a user-chosen name (``stages.<name>.from``); in sections whose entries have
  a ``type``, the type is part of it: ``sources.<name:mysql>.url``, ``sinks.<name:dynamodb>.table``;
- ``[]`` stands for any list item: ``stages.<name>.transform[].filter``;
- ``<field>`` stands for a record field name: ``stages.<name>.aggregate.measures.<field>``.

The type text says ``required`` or gives the default, e.g. ``duration, default 1s``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from inspect import isclass
from typing import Annotated, Any, Literal, TypeGuard, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from headrace.config.base import TypeLabel
from headrace.config.durations import format_duration
from headrace.config.model import Pipeline, ensure_connectors

__all__ = ["iter_config_keys", "reference_markdown"]

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret"}


def _split(tp: Any) -> tuple[Any, list[Any]]:
    metadata: list[Any] = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, metadata = args[0], [*metadata, *args[1:]]
    return tp, metadata


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in get_args(tp) if a is not type(None)]
    return [tp]


def _is_model(tp: Any) -> TypeGuard[type[BaseModel]]:
    return isclass(tp) and issubclass(tp, BaseModel)


def _label(tp: Any, metadata: list[Any] | None = None) -> str:
    tp, inner = _split(tp)
    for item in [*(metadata or []), *inner]:
        if isinstance(item, TypeLabel):
            return item.label
    members = _members(tp)
    if len(members) > 1:
        if all(_is_model(m) for m in members):
            return "mapping, by type"
        return " or ".join(_label(m) for m in members)
    tp, inner = _split(members[0])
    for item in inner:
        if isinstance(item, TypeLabel):
            return item.label
    if get_origin(tp) is Literal:
        return "one of " + "|".join(str(v) for v in get_args(tp))
    if get_origin(tp) is list:
        return f"list of {_label(get_args(tp)[0])}"
    if get_origin(tp) is dict:
        key, value = get_args(tp)
        return f"mapping of {_label(key)} to {_label(value)}"
    if _is_model(tp):
        return "mapping"
    if tp is Any:
        return "any"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _default(field: FieldInfo, label: str) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("default_text"), str):
        return f"default {extra['default_text']}"
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "optional"
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "optional"
    if label == "duration" and isinstance(value, int | float):
        return f"default {format_duration(float(value))}"
    if isinstance(value, bool):
        return f"default {str(value).lower()}"
    if isinstance(value, list | dict) and not value:
        return "default empty"
    if isinstance(value, str) and not value.replace("_", "").isalnum():
        return f"default {value!r}"
    return f"default {value}"


def _children(tp: Any, path: str) -> Iterator[tuple[str, str, str]]:
    tp, _ = _split(tp)
    members = [_split(m)[0] for m in _members(tp)]
    if len(members) != 1:
        return
    (tp,) = members
    if _is_model(tp):
        yield from _model_keys(tp, path + ".")
    elif get_origin(tp) is list:
        yield from _children(get_args(tp)[0], path + "[]")
    elif get_origin(tp) is dict:
        value = _split(get_args(tp)[1])[0]
        entries = [_split(m)[0] for m in _members(value)]
        if len(entries) > 1 and all(_is_model(m) for m in entries):
            for model in entries:
                tag = get_args(model.model_fields["type"].annotation)[0]
                yield from _model_keys(model, f"{path}.<name:{tag}>.")
        elif any(_is_model(m) for m in entries):
            yield from _children(value, f"{path}.<name>")


def _model_keys(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str]]:
    # ``type`` first: it says what the rest of the entry means.
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] != "type")
    for name, field in fields:
        path = prefix + (field.alias or name)
        label = _label(field.annotation, list(field.metadata))
        yield path, f"{label}, {_default(field, label)}", field.description or ""
        yield from _children(field.annotation, path)


def iter_config_keys() -> Iterator[tuple[str, str, str]]:
    """Every pipeline-file key as ``(dotted path, type, description)``; see the module docs.
    Source and sink types are those of ``headrace.plugins`` (plugins included)."""
    ensure_connectors()
    yield from _model_keys(Pipeline, "")


def reference_markdown() -> str:
    """The configuration reference as a Markdown table (one row per key), for
    docs/configuration.md."""
    rows = ["| key | type / default | meaning |", "|---|---|---|"]
    for path, type_text, description in iter_config_keys():
        cells = [f"`{path}`", type_text, description]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
