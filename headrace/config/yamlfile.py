"""Reading the pipeline file's YAML.

``read_yaml(path)`` returns the top-level mapping or raises ``ConfigError`` for a missing or
unreadable file, a YAML syntax error (with line and column), a duplicate key, or a top level that
is not a mapping. Messages name the file and never quote file contents (which may hold secrets).

The YAML dialect is safe YAML with YAML 1.2 booleans: only ``true``/``false`` are booleans, so
keys like ``on:`` (lookup) and values like ``yes``/``no``/``off`` stay strings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from headrace.errors import ConfigError

__all__ = ["read_yaml"]

_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans and duplicate-key detection."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _syntax_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}YAML syntax error: {what}{context}"
    return "YAML syntax error"


def read_yaml(path: Path, shown: str) -> dict[str, Any]:
    """Parse ``path`` (called ``shown`` in messages) into its top-level mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found (give the pipeline file with -f FILE or HEADRACE_PIPELINE)", path=shown
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a pipeline file", path=shown) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", path=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", path=shown) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        message = _syntax_message(exc)
        raise ConfigError(message, path=shown) from None
    if data is None:
        raise ConfigError(
            "the file is empty; expected a mapping with name, kafka, sources, stages, sinks",
            path=shown,
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(
            f"the top level must be a mapping (name, kafka, sources, stages, sinks), not {kind}",
            path=shown,
        )
    return data
