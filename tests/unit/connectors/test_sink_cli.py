"""``headrace sink``: registered, and an unknown sink is a config error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace_cli.main import build_parser, main


def test_sink_command_is_registered() -> None:
    args = build_parser().parse_args(["sink", "orders", "--metrics-port", "0"])
    assert args.name == "orders" and args.metrics_port == 0


def test_unknown_sink_exits_2_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\nkafka: {bootstrap_servers: '127.0.0.1:1'}\ntopics: [t]\n"
        "sinks: {m: {type: mongodb, from: t, uri: 'mongodb://127.0.0.1:1', database: d,"
        " collection: c}}\n"
    )
    assert main(["sink", "nope", "-f", str(f)]) == 2
    assert "no sink named 'nope' in the pipeline file (sinks: m)" in capsys.readouterr().err
