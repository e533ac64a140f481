"""Key fields per topic, and what check does with them (issue #15, defects 1, 2 and 5):
aggregates over input keyed by another field are repartitioned (and check says so); a sink
that applies tombstones must name exactly the key fields of its topic (else exit 2 naming the
key); a sink that skips a ranking's tombstones is warned about."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from headrace.config import load_pipeline
from headrace.config.keys import MEMBER, key_fields, needs_repartition, pipeline_notes
from headrace.config.problems import PipelineConfigError

ORDERS = {
    "type": "s3",
    "bucket": "landing",
    "format": "jsonl",
    "topic": "orders",
    "key": ["order_id"],
}
AGG: dict[str, Any] = {
    "from": "orders",
    "to": "revenue",
    "aggregate": {
        "group_by": ["customer_id"],
        "window": {"type": "tumbling", "size": "1m"},
        "measures": {"revenue": "sum(amount)", "orders": "count()"},
    },
}
RANK = {
    "from": "revenue",
    "to": "top",
    "rank": {"partition_by": ["window_start"], "order_by": ["revenue desc"], "limit": 1},
}


def mongo(**over):
    sink = {
        "type": "mongodb",
        "from": "top",
        "uri": "mongodb://127.0.0.1:27017",
        "database": "d",
        "collection": "c",
        "write": "delete-on-tombstone",
    }
    sink.update(over)
    return sink


def dynamo(**over):
    sink = {"type": "dynamodb", "from": "top", "table": "top", "partition_key": "window_start"}
    sink.update(over)
    return sink


def pipeline(tmp_path, stages=None, sinks=None, sources=None):
    data = {
        "name": "t",
        "kafka": {"bootstrap_servers": "127.0.0.1:9092"},
        "sources": sources or {"orders_s3": ORDERS},
        "stages": stages or {"revenue": AGG, "top": RANK},
    }
    if sinks:
        data["sinks"] = sinks
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_key_fields_follow_sources_and_stages(tmp_path):
    p = load_pipeline(pipeline(tmp_path), env={})
    keys = key_fields(p)
    assert keys["orders"] == ("order_id",)
    assert keys["revenue"] == ("customer_id", "window_start")
    assert keys["top"] == ("window_start", "customer_id")


@pytest.mark.parametrize(
    ("step", "known"),
    [
        ({"filter": "amount > 0"}, True),
        ({"set": {"total": "amount * 2"}}, True),
        ({"set": {"order_id": "amount"}}, False),
        ({"cast": {"order_id": "int"}}, False),
        ({"rename": {"order_id": "id"}}, False),
        ({"rename": {"x": "order_id"}}, False),
        ({"drop": ["order_id"]}, False),
        ({"python": "json:loads"}, False),
    ],
)
def test_a_transform_that_touches_a_key_field_makes_the_key_unknown(tmp_path, step, known):
    stages = {"clean": {"from": "orders", "to": "clean", "transform": [step]}}
    keys = key_fields(load_pipeline(pipeline(tmp_path, stages=stages), env={}))
    assert keys["clean"] == (("order_id",) if known else None)


@pytest.mark.parametrize(
    ("input_key", "group_by", "repartition"),
    [
        (["customer_id"], ["customer_id"], False),  # the demo's shape: the fast path
        (["customer_id"], ["customer_id", "tier"], False),  # key a function of the group
        (["order_id"], ["customer_id"], True),  # defect 1
        (["customer_id", "tier"], ["customer_id"], True),
        (None, ["customer_id"], True),  # null key: random partitions
        (["customer_id"], [], True),  # one group over every partition
    ],
)
def test_aggregate_repartitions_unless_keyed_by_its_group(
    tmp_path, input_key, group_by, repartition
):
    source = (
        {**ORDERS, "key": input_key}
        if input_key
        else {k: v for k, v in ORDERS.items() if k != "key"}
    )
    agg = {**AGG, "aggregate": {**AGG["aggregate"], "group_by": group_by}}
    p = load_pipeline(pipeline(tmp_path, sources={"s": source}, stages={"revenue": agg}), env={})
    stage = p.stages["revenue"]
    assert needs_repartition(stage, key_fields(p).get("orders")) is repartition
    said = [n for n in pipeline_notes(p) if "repartitions" in n]
    assert bool(said) is repartition
    if repartition:
        assert "'headrace-t-revenue-by-group'" in said[0]


@pytest.mark.parametrize(
    "sink",
    [
        mongo(id=["window_start", "customer_id"]),
        mongo(id=["customer_id", "window_start"]),  # by name: any order
        mongo(),  # the Kafka key as _id
        dynamo(sort_key="customer_id"),
        dynamo(partition_key="customer_id", sort_key="window_start"),
        mongo(id=["customer_id"], write="upsert"),  # tombstones skipped: any id
    ],
)
def test_sink_layouts_whose_tombstones_match_are_accepted(tmp_path, sink):
    load_pipeline(pipeline(tmp_path, sinks={"out": sink}), env={})


@pytest.mark.parametrize(
    ("sink", "key"),
    [
        (mongo(id=["customer_id"]), "sinks.out.id"),
        (mongo(id=["window_start", "customer_id", "revenue"]), "sinks.out.id"),
        (dynamo(), "sinks.out.partition_key"),
        (dynamo(partition_key="customer_id", sort_key="revenue"), "sinks.out.partition_key"),
    ],
)
def test_sink_layouts_a_tombstone_cannot_address_are_refused(tmp_path, sink, key):
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline(pipeline(tmp_path, sinks={"out": sink}), env={})
    assert f"{key}: 'top' is keyed by [window_start, customer_id]" in str(info.value)


def test_a_rank_over_an_opaque_key_refuses_named_ids(tmp_path):
    stages = {
        "clean": {"from": "orders", "to": "clean", "transform": [{"python": "json:loads"}]},
        "top": {**RANK, "from": "clean"},
    }
    p = load_pipeline(pipeline(tmp_path, stages=stages, sinks={"out": mongo()}), env={})
    assert key_fields(p)["top"] == ("window_start", MEMBER)
    with pytest.raises(PipelineConfigError, match=r"sinks\.out\.id: 'top' is a ranking"):
        load_pipeline(
            pipeline(tmp_path, stages=stages, sinks={"out": mongo(id=["window_start", "x"])}),
            env={},
        )


def test_check_warns_when_a_sink_skips_a_rankings_tombstones(tmp_path):
    p = load_pipeline(pipeline(tmp_path, sinks={"out": mongo(write="upsert")}), env={})
    assert any("write: delete-on-tombstone" in n and "'out'" in n for n in pipeline_notes(p))
    p = load_pipeline(pipeline(tmp_path, sinks={"out": mongo()}), env={})
    assert not [n for n in pipeline_notes(p) if n.startswith("warning")]


def test_check_command_prints_the_repartition_and_exits_2_on_a_bad_layout(tmp_path):
    path = pipeline(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "check", "-f", str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "repartitions it by group_by" in run.stdout
    bad = pipeline(tmp_path, sinks={"out": mongo(id=["customer_id"])})
    run = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "check", "-f", str(bad)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "sinks.out.id" in run.stderr + run.stdout


def test_check_warns_when_an_insert_only_sink_reads_running_values(tmp_path):
    updates = {**AGG, "aggregate": {**AGG["aggregate"], "emit": "updates"}}
    sink = mongo(**{"from": "revenue", "write": "insert"})
    p = load_pipeline(pipeline(tmp_path, stages={"revenue": updates}, sinks={"out": sink}), env={})
    assert any("first partial result" in n and "'out'" in n for n in pipeline_notes(p))
    final = load_pipeline(pipeline(tmp_path, stages={"revenue": AGG}, sinks={"out": sink}), env={})
    assert not [n for n in pipeline_notes(final) if n.startswith("warning")]
