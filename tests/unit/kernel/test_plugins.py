"""The connector registry's discovery (``headrace.plugins``): plugins come from the entry-point
groups ``headrace.sources`` and ``headrace.sinks``, and a plugin may not take a built-in type.

Entry points are faked (``headrace.plugins.entry_points``); the registry's caches are cleared
around each test so no other test sees the fakes."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from headrace import plugins
from headrace.config.sinks import SinkBase
from headrace.errors import ConfigError
from headrace.plugins import BUILTIN_SINKS, SinkPlugin, sink_plugin, sink_plugins


class _FileSink(SinkBase):
    type: Literal["file"] = Field(description="Sink type: file.")


class _FakeMongo(SinkBase):
    type: Literal["mongodb"] = Field(description="Sink type: mongodb.")


def _build(_name: str, _config: Any, _context: Any) -> Any:
    raise AssertionError("not built here")


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[EntryPoint]]:
    """The ``headrace.sinks`` entry points the registry sees (append to it); the plugin
    objects live in a fake module ``fake_plugin``."""
    module = types.ModuleType("fake_plugin")
    vars(module).update(
        FILE=SinkPlugin(type="file", config=_FileSink, build=_build),
        MONGO=SinkPlugin(type="mongodb", config=_FakeMongo, build=_build),
        NOT_A_PLUGIN=object(),
    )
    monkeypatch.setitem(sys.modules, "fake_plugin", module)
    found: list[EntryPoint] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in found if ep.group == group]

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    sink_plugins.cache_clear()
    yield found
    sink_plugins.cache_clear()


def test_a_plugin_sink_joins_the_built_in_ones(installed: list[EntryPoint]) -> None:
    installed.append(EntryPoint("file", "fake_plugin:FILE", "headrace.sinks"))
    assert list(sink_plugins()) == [*BUILTIN_SINKS, "file"]
    assert sink_plugin("file").config is _FileSink
    with pytest.raises(
        ConfigError, match=r"no sink type 'nope' \(known: mongodb, dynamodb, file\)"
    ):
        sink_plugin("nope")


def test_a_plugin_taking_a_built_in_type_is_refused_naming_it(
    installed: list[EntryPoint],
) -> None:
    installed.append(EntryPoint("mongodb", "fake_plugin:MONGO", "headrace.sinks"))
    with pytest.raises(ConfigError) as err:
        sink_plugins()
    message = str(err.value)
    assert message == (
        "an installed package registers the sink type 'mongodb' (entry point headrace.sinks: "
        "mongodb = fake_plugin:MONGO), which is built in; give it another name (its entry "
        "point and its plugin's type), or uninstall it"
    )
    assert "\n" not in message


def test_the_refusal_names_the_distribution_when_known(
    installed: list[EntryPoint], tmp_path: Path
) -> None:
    info = tmp_path / "acme_dynamo-1.0.dist-info"  # as pip installs a plugin package
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-dynamo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[headrace.sinks]\ndynamodb = fake_plugin:MONGO\n")
    installed.extend(PathDistribution(info).entry_points.select(group="headrace.sinks"))
    with pytest.raises(ConfigError, match=r"^the package 'acme-dynamo' registers the sink type"):
        sink_plugins()


def test_a_built_in_listed_again_as_its_own_entry_point_is_not_a_conflict(
    installed: list[EntryPoint],
) -> None:
    installed.append(EntryPoint("mongodb", BUILTIN_SINKS["mongodb"], "headrace.sinks"))
    assert list(sink_plugins()) == list(BUILTIN_SINKS)


def test_an_entry_point_must_name_a_plugin_of_its_own_type(installed: list[EntryPoint]) -> None:
    installed.append(EntryPoint("file", "fake_plugin:NOT_A_PLUGIN", "headrace.sinks"))
    with pytest.raises(ConfigError, match="fake_plugin:NOT_A_PLUGIN is not a SinkPlugin"):
        sink_plugins()
    sink_plugins.cache_clear()
    installed[:] = [EntryPoint("jsonl", "fake_plugin:FILE", "headrace.sinks")]
    with pytest.raises(ConfigError, match="declares type 'file'; they must match"):
        sink_plugins()
