"""``headrace run`` starts ``headrace gateway`` when the pipeline file has a gateway: section
(a long-lived process, never waited for by --until-idle), and not otherwise."""

from __future__ import annotations

from pathlib import Path

from headrace.config import load_pipeline
from headrace_cli import run_cmd

GATEWAY_ONLY = """
name: p
kafka: {bootstrap_servers: "127.0.0.1:1"}
gateway:
  topics:
    orders: {key: id}
"""


def test_a_gateway_section_adds_the_gateway_process(tmp_path: Path) -> None:
    file = tmp_path / "pipeline.yaml"
    file.write_text(GATEWAY_ONLY)
    specs = run_cmd._specs(load_pipeline(file), file, True, done=lambda name: False)
    assert [s.name for s in specs] == ["gateway"]
    (gateway,) = specs
    assert list(gateway.argv[-4:]) == ["headrace_cli.main", "-f", str(file), "gateway"]
    assert not gateway.finite and gateway.ready is None
    assert run_cmd._missing_commands(load_pipeline(file)) == []


def test_processes_start_that_many_gateways(tmp_path: Path) -> None:
    file = tmp_path / "pipeline.yaml"
    file.write_text(GATEWAY_ONLY.replace("gateway:\n", "gateway:\n  processes: 2\n"))
    specs = run_cmd._specs(load_pipeline(file), file, False, done=lambda name: False)
    assert [s.name for s in specs] == ["gateway:0", "gateway:1"]


STAGE_ONLY = """
name: p
kafka: {bootstrap_servers: "127.0.0.1:1"}
topics: [x]
stages:
  s: {from: x, to: y, transform: [{filter: "a > 1"}]}
"""


def test_no_gateway_section_no_gateway_process(tmp_path: Path) -> None:
    file = tmp_path / "pipeline.yaml"
    file.write_text(STAGE_ONLY)
    specs = run_cmd._specs(load_pipeline(file), file, False, done=lambda name: False)
    assert [s.name for s in specs] == ["worker"]
