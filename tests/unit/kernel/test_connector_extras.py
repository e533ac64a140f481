"""A connector's client library is an extra (issue 16): the core installs none of them, the
runtime imports none of them until a connector builds or probes, and a missing one stops that
connector with a one-line ``pip install 'headrace[<extra>]'``.

The import checks run in a subprocess where the libraries are blocked (``sys.modules[name] =
None``: ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` answers None,
as when the package is not installed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from headrace.plugins import SinkPlugin, SourcePlugin, sink_plugins, source_plugins

ROOT = Path(__file__).resolve().parents[3]
CONNECTOR_LIBRARIES = ("boto3", "botocore", "pymongo", "bson", "sqlalchemy", "pymysql", "MySQLdb")

# Runs in the child: block the libraries, run the given Python, print what leaked in.
_CHILD = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None
{body}
leaked = sorted(m for m in sys.modules if sys.modules[m] is not None
                and m.split(".")[0] in {blocked!r})
print("LEAKED=" + json.dumps(leaked))
"""


def _run_blocked(body: str, blocked: tuple[str, ...] = CONNECTOR_LIBRARIES) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(blocked=blocked, body=body)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"child failed:\n{done.stdout}\n{done.stderr}"
    match = re.search(r"^LEAKED=(.*)$", done.stdout, re.MULTILINE)
    assert match, done.stdout
    assert json.loads(match.group(1)) == [], f"imported although blocked: {match.group(1)}"
    return done.stdout, done.stderr


S3_AND_STAGE = """\
name: s3_only
kafka: {bootstrap_servers: '127.0.0.1:1'}
sources:
  landing:
    type: s3
    bucket: landing
    prefix: orders/
    format: jsonl
    topic: orders.raw
    key: [order_id]
stages:
  clean:
    from: orders.raw
    to: orders.clean
    transform:
      - filter: "quantity > 0"
"""

MONGO_SINK = """\
name: to_mongo
kafka: {bootstrap_servers: '127.0.0.1:1'}
topics: [orders.clean]
sinks:
  orders_mongo:
    type: mongodb
    from: orders.clean
    uri: mongodb://127.0.0.1:1
    database: shop
    collection: orders
"""


def test_the_runtime_imports_no_connector_library(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(S3_AND_STAGE)
    out, err = _run_blocked(
        f"""
import headrace.config, streams.app, producers.build, connectors.build, headrace_cli.main
from headrace.config import load_pipeline
from headrace_cli.main import build_parser, main
build_parser()
p = load_pipeline({str(pipeline)!r})
assert list(p.sources) == ["landing"] and list(p.stages) == ["clean"], p
assert main(["check", "-f", {str(pipeline)!r}]) == 0
assert main(["config", "reference"]) == 0
"""
    )
    assert "'s3_only' is valid: 1 source(s), 1 stage(s), 0 sink(s)" in out, out + err


def test_without_pymongo_check_passes_and_building_the_sink_names_the_extra(
    tmp_path: Path,
) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(MONGO_SINK)
    out, err = _run_blocked(
        f"""
from connectors.build import build_sink
from headrace.config import load_pipeline
from headrace.errors import ConfigError
from headrace_cli.main import main
assert main(["check", "-f", {str(pipeline)!r}]) == 0
try:
    build_sink(load_pipeline({str(pipeline)!r}), "orders_mongo")
except ConfigError as exc:
    print("BUILD=" + str(exc))
else:
    raise AssertionError("the sink was built without pymongo")
sys.stderr.write("CLI>")
sys.stderr.flush()
print("SINK_EXIT=" + str(main(["sink", "orders_mongo", "-f", {str(pipeline)!r}])))
""",
        blocked=("pymongo", "bson"),
    )
    assert "pipeline 'to_mongo' is valid: 0 source(s), 0 stage(s), 1 sink(s)" in out, out + err
    hint = (
        "sink 'orders_mongo' (type mongodb) needs the Python package 'pymongo', which is not "
        "installed: pip install 'headrace[mongodb]'"
    )
    build_line = re.search(r"^BUILD=(.*)$", out, re.MULTILINE)
    assert build_line and build_line.group(1) == hint, out
    assert "SINK_EXIT=2" in out, out + err
    cli = err.split("CLI>", 1)[1].strip()
    assert cli.endswith(hint) and "\n" not in cli, cli  # one line, exit 2


def _requirements(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distribution names ``headrace[extra]`` installs, following ``headrace[...]``."""
    found: set[str] = set()
    for req in extras[extra]:
        name = re.split(r"[\[<>=!~;\s]", req, maxsplit=1)[0].lower()
        if name == "headrace":
            for inner in req.split("[", 1)[1].split("]", 1)[0].split(","):
                found |= _requirements(inner.strip(), extras)
        else:
            found.add(name)
    return found


def test_each_connector_library_is_its_extra_and_not_a_core_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    core = {re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    dists = packages_distributions()  # import name -> distributions (all installed by dev)
    plugins: list[SourcePlugin | SinkPlugin] = [
        *source_plugins().values(),
        *sink_plugins().values(),
    ]
    for plugin in plugins:
        assert plugin.extra in extras, f"{plugin.type}: no extra {plugin.extra!r} in pyproject"
        for module in plugin.requires:
            wanted = {d.lower() for d in dists[module]}
            assert wanted <= _requirements(plugin.extra, extras), (plugin.type, module, wanted)
            assert wanted <= _requirements("all", extras), (plugin.type, module)
            assert not wanted & core, f"{wanted} is a core dependency; it belongs in an extra"
    for library in CONNECTOR_LIBRARIES:
        assert not {d.lower() for d in dists.get(library, [])} & core, library
    assert {"sqlalchemy", "pymysql"} <= _requirements("mysql", extras)
    assert {"sqlalchemy", "mysqlclient"} <= _requirements("mysqlclient", extras)
    # the README's setup (make setup: `pip install -e '.[dev]'`) installs everything
    assert _requirements("all", extras) | {"mysqlclient"} <= _requirements("dev", extras)
