"""Building blocks shared by every pipeline-file model.

- ``ConfigModel``: the base class. Unknown keys are errors (``extra="forbid"``), instances are
  immutable, and ``repr()``/``str()`` never show a secret (see ``headrace.config.redact``).
- ``problem``/``problems``: raise these from validators; the loader turns them into
  ``ConfigError`` lines naming the key path (``key`` is relative to the model that raised).
- ``FieldList``, ``Name``, ``Topic``, ``HookRef``: small annotated types with clear errors.
- ``TypeLabel``: annotation metadata naming a type for the configuration reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr
from pydantic_core import PydanticCustomError

from headrace.config.redact import REDACTED, is_secret_key, known_secrets, redact_text, redact_tree

__all__ = [
    "ConfigModel",
    "FieldList",
    "HookRef",
    "Name",
    "NonEmptyFieldList",
    "ProblemKey",
    "Topic",
    "TypeLabel",
    "problem",
    "problems",
]


@dataclass(frozen=True)
class TypeLabel:
    """Annotation metadata: how the configuration reference names this type."""

    label: str


ProblemKey = str | tuple[str | int, ...] | None
"""Where a problem is, relative to the raising model: a field alias, a path tuple, or None."""


def problem(message: str, key: ProblemKey = None) -> PydanticCustomError:
    """A validation error with ``message`` at ``key`` (relative to the model that raises it)."""
    return problems([(key, message)])


def problems(items: Iterable[tuple[ProblemKey, str]]) -> PydanticCustomError:
    """One validation error carrying several ``(key, message)`` problems of one model."""
    found = list(items)
    text = "; ".join(f"{k}: {m}" if k else m for k, m in found)
    return PydanticCustomError("headrace", "{message}", {"message": text, "problems": found})


class ConfigModel(BaseModel):
    """Base of every pipeline-file model: strict keys, immutable, secret-safe ``repr``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        secrets = known_secrets()
        for name, value in super().__repr_args__():
            if isinstance(value, BaseModel | SecretStr) or value is None:
                yield name, value
            elif name is not None and is_secret_key(name):
                yield name, REDACTED
            else:
                yield name, _safe(redact_tree(value, secrets), secrets)


class _Redacted:
    """Shows another object's ``repr`` with secrets redacted."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _safe(value: Any, secrets: frozenset[str]) -> Any:
    """Wrap objects whose ``repr`` we do not control (expressions, measures) in ``_Redacted``."""
    if isinstance(value, BaseModel | SecretStr | str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _safe(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v, secrets) for v in value]
    return _Redacted(redact_text(repr(value), secrets))


def _to_list(value: object) -> object:
    if isinstance(value, str):
        return [value]
    return value


def _check_fields(value: list[str]) -> list[str]:
    for item in value:
        if not item.strip():
            raise problem("field names must not be empty")
    if len(set(value)) != len(value):
        dupes = sorted({v for v in value if value.count(v) > 1})
        raise problem(f"field listed twice: {', '.join(dupes)}")
    return value


def _non_empty(value: list[str]) -> list[str]:
    if not value:
        raise problem("must list at least one field")
    return value


FieldList = Annotated[
    list[str],
    BeforeValidator(_to_list),
    AfterValidator(_check_fields),
    TypeLabel("list of field names"),
]
"""Record field names; a single string is shorthand for a one-item list."""

NonEmptyFieldList = Annotated[FieldList, AfterValidator(_non_empty)]
"""Like ``FieldList`` but at least one field."""

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOOK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise problem(
            f"{value!r} is not a valid name (a letter, then letters, digits, '_' or '-', "
            "at most 100 characters)"
        )
    return value


def _check_topic(value: str) -> str:
    if not _TOPIC_RE.match(value) or value in {".", ".."}:
        raise problem(
            f"{value!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-', "
            "at most 249 characters)"
        )
    return value


def _check_hook(value: str) -> str:
    if not _HOOK_RE.match(value):
        raise problem(f"{value!r} is not a hook reference; write 'package.module:function'")
    return value


Name = Annotated[str, AfterValidator(_check_name), TypeLabel("name")]
"""A source, stage or sink name: a letter, then letters, digits, ``_`` or ``-``."""

Topic = Annotated[str, AfterValidator(_check_topic), TypeLabel("topic")]
"""A Kafka topic name."""

HookRef = Annotated[str, AfterValidator(_check_hook), TypeLabel("module:function")]
"""A user function as ``package.module:function``."""
