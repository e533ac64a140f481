"""``check`` warns where a source's crash makes an aggregate count records twice: a source
without ``exactly_once`` feeding an aggregate, directly or through records stages (the chaos
suite's long run, round 7, docs/chaos.md)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml

from headrace.config import load_pipeline
from headrace.config.delivery import at_least_once_inputs, delivery_notes

SOURCE: dict[str, Any] = {
    "type": "s3",
    "bucket": "landing",
    "format": "jsonl",
    "topic": "orders",
    "key": ["order_id"],
}
CLEAN = {"from": "orders", "to": "clean", "transform": [{"set": {"x": "amount * 2"}}]}
AGG: dict[str, Any] = {
    "from": "clean",
    "to": "revenue",
    "aggregate": {
        "group_by": ["customer_id"],
        "window": {"type": "tumbling", "size": "1m"},
        "measures": {"revenue": "sum(amount)"},
    },
}
RANK = {
    "from": "revenue",
    "to": "top",
    "rank": {"partition_by": ["window_start"], "order_by": ["revenue desc"], "limit": 1},
}


def pipeline(tmp_path, sources, stages):
    data = {
        "name": "t",
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "sources": sources,
        "stages": stages,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_an_at_least_once_source_behind_a_transform_is_named_with_its_aggregate(tmp_path):
    sources = {"a": SOURCE, "b": {**SOURCE, "exactly_once": True}}
    p = load_pipeline(pipeline(tmp_path, sources, {"clean": CLEAN, "revenue": AGG}), env={})
    assert at_least_once_inputs(p, "clean") == ["a"]
    [note] = delivery_notes(p)
    assert note.startswith("warning: source 'a' is at-least-once")
    assert "aggregate stage 'revenue'" in note
    assert "sources.a.exactly_once: true" in note


def test_exactly_once_sources_and_stateful_outputs_are_not_warned_about(tmp_path):
    sources = {"a": {**SOURCE, "exactly_once": True}}
    stages = {"clean": CLEAN, "revenue": AGG, "top": RANK}
    p = load_pipeline(pipeline(tmp_path, sources, stages), env={})
    assert delivery_notes(p) == []
    # an aggregate over a rank's output: the walk stops at the stateful stage
    again = {**AGG, "from": "top", "to": "again"}
    stages = {"clean": CLEAN, "revenue": AGG, "top": RANK, "again": again}
    p = load_pipeline(pipeline(tmp_path, {"a": SOURCE}, stages), env={})
    assert [n for n in delivery_notes(p) if "'again'" in n] == []
    assert len(delivery_notes(p)) == 1  # 'revenue' still is


def test_check_prints_the_warning_and_exits_0(tmp_path):
    path = pipeline(tmp_path, {"a": SOURCE}, {"clean": CLEAN, "revenue": AGG})
    run = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "check", "-f", str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "warning: source 'a' is at-least-once" in run.stdout


def test_the_shop_demo_pipeline_has_no_such_warning():
    from pathlib import Path

    shop = Path(__file__).resolve().parents[3] / "examples" / "shop" / "pipeline.yaml"
    env = {"HEADRACE_MYSQL_PASSWORD": "x"}
    assert delivery_notes(load_pipeline(shop, env=env)) == []
