"""The connector registry: every source and sink type, built in or from a plugin package.

A connector is one module that declares a ``SourcePlugin`` or ``SinkPlugin``: its ``type``
(the pipeline file's ``type:``), its config model (whose field descriptions the configuration
reference is generated from), how to build it, what ``headrace check --connect`` probes, and
which client library it needs (``requires``, installed by the pip ``extra``). The registry
replaces every ``isinstance`` chain: the config union, the reference, ``check --connect``,
``headrace produce`` and ``headrace sink`` all ask it.

Where connectors come from:

- the built-in ones, named below as entry-point strings (``module:attribute``);
- installed packages, through the entry-point groups ``headrace.sources`` and
  ``headrace.sinks`` (``[project.entry-points."headrace.sinks"] jsonl = "pkg.mod:PLUGIN"``);
  ``examples/jsonl-sink/`` is such a package. A plugin may not reuse a built-in type.

Loading is lazy (the first call), so importing the kernel imports no connector; a connector
module imports its client library only when it builds or probes, so ``check`` works without
it and ``require`` says which extra to install.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

from headrace.errors import ConfigError

if TYPE_CHECKING:
    from headrace.config.sinks import SinkBase
    from headrace.config.sources import SourceBase

__all__ = [
    "BUILTIN_SINKS",
    "BUILTIN_SOURCES",
    "Probe",
    "SinkPlugin",
    "SourcePlugin",
    "require",
    "sink_plugin",
    "sink_plugins",
    "source_plugin",
    "source_plugins",
]

Probe = tuple[str, str, Callable[[float], tuple[bool, str]]]
"""One ``check --connect`` check: (kind, target, run(timeout) -> (reachable, detail))."""

BUILTIN_SOURCES = {
    "mysql": "producers.mysql:PLUGIN",
    "mysql_cdc": "producers.mysql_cdc:PLUGIN",
    "s3": "producers.s3:PLUGIN",
}
BUILTIN_SINKS = {
    "mongodb": "connectors.mongodb:PLUGIN",
    "dynamodb": "connectors.dynamodb:PLUGIN",
}


@dataclass(frozen=True)
class SourcePlugin:
    """A source type. ``build(pipeline, name, config)`` returns ``(source, encoder)`` for
    ``producers.build`` (a ``producers.runner.Source`` and its ``RecordEncoder``);
    ``probes(name, config)`` the checks ``check --connect`` runs (nothing written)."""

    type: str
    config: builtins.type[SourceBase]
    build: Callable[[Any, str, Any], tuple[Any, Any]]
    probes: Callable[[str, Any], list[Probe]] = field(default=lambda _name, _config: [])
    requires: tuple[str, ...] = ()
    extra: str | None = None


@dataclass(frozen=True)
class SinkPlugin:
    """A sink type. ``build(name, config, context)`` returns a ``connectors.records.SinkWriter``
    (``context``: a ``connectors.build.SinkContext``: the topic's key fields, metrics
    callbacks); ``probes(name, config)`` the checks ``check --connect`` runs."""

    type: str
    config: builtins.type[SinkBase]
    build: Callable[[str, Any, Any], Any]
    probes: Callable[[str, Any], list[Probe]] = field(default=lambda _name, _config: [])
    requires: tuple[str, ...] = ()
    extra: str | None = None


def _load(spec: str, kind: Literal["source", "sink"]) -> Any:
    module, _, attr = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"the {kind} connector {spec!r} cannot be loaded ({type(exc).__name__}: {exc}); "
            "reinstall the package that provides it, or uninstall it"
        ) from None
    expected = SourcePlugin if kind == "source" else SinkPlugin
    if not isinstance(found, expected):
        raise ConfigError(f"{spec} is not a {expected.__name__} (a {type(found).__name__})")
    return found


def _discover(kind: Literal["source", "sink"]) -> Iterator[tuple[str, str]]:
    builtin = BUILTIN_SOURCES if kind == "source" else BUILTIN_SINKS
    yield from builtin.items()
    for ep in entry_points(group=f"headrace.{kind}s"):
        if ep.name in builtin:
            if ep.value != builtin[ep.name]:
                dist = getattr(ep, "dist", None)
                package = f"the package {dist.name!r}" if dist else "an installed package"
                raise ConfigError(
                    f"{package} registers the {kind} type {ep.name!r} (entry point "
                    f"{ep.group}: {ep.name} = {ep.value}), which is built in; give it "
                    "another name (its entry point and its plugin's type), or uninstall it"
                )
            continue
        yield ep.name, ep.value


@cache
def source_plugins() -> dict[str, SourcePlugin]:
    """Every source type, by ``type`` (built-ins first, then plugins by name)."""
    return _plugins("source")


@cache
def sink_plugins() -> dict[str, SinkPlugin]:
    """Every sink type, by ``type`` (built-ins first, then plugins by name)."""
    return _plugins("sink")


def _plugins(kind: Literal["source", "sink"]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, spec in _discover(kind):
        plugin = _load(spec, kind)
        if plugin.type != name:
            raise ConfigError(
                f"entry point {name!r} = {spec!r} declares type {plugin.type!r}; they must match"
            )
        found[name] = plugin
    return found


def source_plugin(type_: str) -> SourcePlugin:
    """The plugin of source type ``type_``; ConfigError naming the known types."""
    plugins = source_plugins()
    if type_ not in plugins:
        raise ConfigError(f"no source type {type_!r} (known: {', '.join(plugins)})")
    return plugins[type_]


def sink_plugin(type_: str) -> SinkPlugin:
    """The plugin of sink type ``type_``; ConfigError naming the known types."""
    plugins = sink_plugins()
    if type_ not in plugins:
        raise ConfigError(f"no sink type {type_!r} (known: {', '.join(plugins)})")
    return plugins[type_]


def require(plugin: SourcePlugin | SinkPlugin, owner: str) -> None:
    """ConfigError with a one-line install hint when a library ``plugin`` needs is missing
    (``owner``: e.g. ``sink 'orders_mongo'``)."""
    missing = [m for m in plugin.requires if importlib.util.find_spec(m) is None]
    if missing:
        extra = f"pip install 'headrace[{plugin.extra}]'" if plugin.extra else "install it"
        raise ConfigError(
            f"{owner} (type {plugin.type}) needs the Python package {missing[0]!r}, which is "
            f"not installed: {extra}"
        )
