"""RecordsStage on messages: outputs in input order with key and source header, drops,
dead letters that do not stop the batch, hooks fanning out, the input left untouched, shed."""

from __future__ import annotations

import sys
import types
from decimal import Decimal
from typing import Any

import orjson
import pytest

from headrace.config import Stage
from streams.stages.base import HEADER_SOURCE, InMessage
from streams.stages.records import RecordsStage


def stage(**spec: Any) -> RecordsStage:
    return RecordsStage(
        "clean", Stage.model_validate({"from": "in", "to": "out", **spec}), clock=lambda: 0.0
    )


def msg(offset: int, value: Any, key: bytes = b"k", partition: int = 2) -> InMessage:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return InMessage("in", partition, offset, key, raw, 1_000 + offset)


ORDERS = {
    "transform": [
        {"filter": "quantity > 0"},
        {"cast": {"price": "decimal"}},
        {"set": {"total": "price * quantity", "price": "quantity"}},
    ]
}


def test_outputs_in_order_with_key_timestamp_and_source_header() -> None:
    batch = [msg(10 + i, {"quantity": q, "price": "0.10"}) for i, q in enumerate([3, 0, 2])]
    out = stage(**ORDERS).process(2, batch)
    assert [orjson.loads(m.value or b"") for m in out.messages] == [
        {"quantity": 3, "price": 3, "total": "0.30"},  # set reads the record before the step
        {"quantity": 2, "price": 2, "total": "0.20"},
    ]
    assert [(m.topic, m.key, m.timestamp_ms) for m in out.messages] == [
        ("out", b"k", 1_010),
        ("out", b"k", 1_012),
    ]
    assert [m.headers for m in out.messages] == [
        [(HEADER_SOURCE, b"in|2|10|0")],
        [(HEADER_SOURCE, b"in|2|12|0")],
    ]
    assert out.counts == {"dropped": 1, "out": 2, "dlq": 0}
    assert out.dead == [] and out.wait_s == 0


def test_key_fields_tombstones_and_bad_records_go_on() -> None:
    s = stage(key=["c"], transform=[{"cast": {"n": "int"}}])
    batch = [
        msg(0, {"c": "a", "n": "1"}),
        msg(1, b"not json"),
        msg(2, None),  # tombstone: dropped
        msg(3, {"c": "b", "n": "x"}),  # cast fails: DLQ
        msg(4, [1, 2]),  # not an object: DLQ
        msg(5, {"c": "c", "n": "5"}),
    ]
    out = s.process(2, batch)
    assert [(m.key, orjson.loads(m.value or b"")) for m in out.messages] == [
        (b"a", {"c": "a", "n": 1}),
        (b"c", {"c": "c", "n": 5}),
    ]
    assert [(d.topic, d.value) for d in out.dead] == [
        ("in.dlq", b"not json"),
        ("in.dlq", orjson.dumps({"c": "b", "n": "x"})),
        ("in.dlq", b"[1,2]"),
    ]
    errors = [dict(d.headers) for d in out.dead]
    assert all(h["headrace.stage"] == b"clean" for h in errors)
    assert b"transform[0] cast" in errors[1]["headrace.error.message"]
    assert out.counts == {"dropped": 1, "out": 2, "dlq": 3}


@pytest.fixture
def hooks() -> Any:
    mod = types.ModuleType("headrace_records_stage_hooks")
    kept = {"shared": 1}

    def split(v: dict[str, Any]) -> Any:
        return [{**v, "part": i} for i in range(v["n"])]

    def same(v: dict[str, Any]) -> Any:
        return kept  # the hook's own object: later steps must not change it

    mod.split, mod.same, mod.kept = split, same, kept  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_hook_fans_out_with_an_index_per_output(hooks: Any) -> None:
    s = stage(transform=[{"python": "headrace_records_stage_hooks:split"}, {"set": {"x": "part"}}])
    out = s.process(0, [msg(7, {"n": 2}, partition=0), msg(8, {"n": 0}, partition=0)])
    assert [orjson.loads(m.value or b"") for m in out.messages] == [
        {"n": 2, "part": 0, "x": 0},
        {"n": 2, "part": 1, "x": 1},
    ]
    assert [m.headers[0][1] for m in out.messages] == [b"in|0|7|0", b"in|0|7|1"]
    assert out.counts["dropped"] == 1


def test_steps_after_a_hook_never_change_the_hooks_objects(hooks: Any) -> None:
    s = stage(
        transform=[
            {"python": "headrace_records_stage_hooks:same"},
            {"set": {"shared": "shared + 1"}},
            {"cast": {"shared": "str"}},
        ]
    )
    out = s.process(0, [msg(0, {}), msg(1, {})])
    assert [orjson.loads(m.value or b"") for m in out.messages] == [{"shared": "2"}] * 2
    assert hooks.kept == {"shared": 1}


def test_transformer_leaves_a_value_it_does_not_own_as_it_was() -> None:
    s = stage(**ORDERS)
    value = {"quantity": 2, "price": "1.5"}
    assert s.transformer.apply(value) == [{"quantity": 2, "price": 2, "total": Decimal("3.0")}]
    assert value == {"quantity": 2, "price": "1.5"}


def test_shed_sends_the_excess_unchanged_to_the_overflow_topic() -> None:
    s = stage(rate_limit={"rate": 10, "burst": 2, "on_excess": "shed"})
    batch = [msg(i, {"i": i}) for i in range(3)]
    out = s.process(2, batch)
    assert [m.topic for m in out.messages] == ["out", "out", "in.overflow"]
    assert out.messages[2].value == batch[2].value and out.messages[2].headers == []
    assert out.counts == {"shed": 1, "out": 2, "dlq": 0}


def test_avro_inputs_decode_by_schema_id_once_the_worker_has_a_registry() -> None:
    """A source with ``format: avro`` feeding a stage: Confluent-framed records decode with
    the registry's schema; before a registry is set they are dead letters with the reason."""
    from schemas import AvroCodec, RecordCodec

    schema = {
        "type": "record",
        "name": "o",
        "fields": [{"name": "quantity", "type": "long"}, {"name": "price", "type": "string"}],
    }

    class Registry:
        def schema_for_id(self, schema_id: int) -> dict[str, Any]:
            if schema_id != 7:
                raise LookupError(f"no schema with id {schema_id}")
            return schema

    framed = AvroCodec(schema, 7).encode({"quantity": 2, "price": "0.10"})
    unknown = AvroCodec(schema, 8).encode({"quantity": 1, "price": "0.10"})
    out = stage(**ORDERS).process(2, [msg(1, framed)])
    assert out.counts["dlq"] == 1 and "no schema registry" in str(out.dead[0])
    with_registry = stage(**ORDERS)
    with_registry.codec = RecordCodec(Registry())
    out = with_registry.process(
        2, [msg(2, framed), msg(3, unknown), msg(4, {"quantity": 1, "price": "1"})]
    )
    assert [orjson.loads(m.value or b"") for m in out.messages] == [
        {"quantity": 2, "price": 2, "total": "0.20"},
        {"quantity": 1, "price": 1, "total": "1"},
    ]
    assert out.counts["dlq"] == 1  # the unknown schema id, with the reason


def test_an_upstream_records_stages_position_goes_on_through_this_partition() -> None:
    upstream = InMessage(
        "mid",
        1,
        7,
        b"k",
        orjson.dumps({"quantity": 1, "price": "1"}),
        5,
        ((HEADER_SOURCE, b"in|2|40|0"),),
    )
    out = stage(**ORDERS).process(1, [upstream, msg(8, {"quantity": 1, "price": "1"})])
    assert [m.headers for m in out.messages] == [
        [(HEADER_SOURCE, b"in|2>mid|1|40|0.0")],  # the first stage's position, via mid[1]
        [(HEADER_SOURCE, b"in|2|8|0")],  # no header: this input's own position
    ]


@pytest.mark.parametrize("header", [b"garbage", b"a|b|c", b"in|2|x|0", b"in|2|4|0..1", b""])
def test_a_header_not_of_the_form_is_ignored(header: bytes) -> None:
    odd = InMessage(
        "in", 2, 9, b"k", orjson.dumps({"quantity": 1, "price": "1"}), 5, ((HEADER_SOURCE, header),)
    )
    out = stage(**ORDERS).process(2, [odd])
    assert out.messages[0].headers == [(HEADER_SOURCE, b"in|2|9|0")]


def test_an_output_without_a_key_goes_where_its_source_position_says() -> None:
    """Not to a random partition: a replay must land where the first copy did, on the same
    path, or the aggregate downstream cannot recognize it (the stream oracle's replays)."""
    from zlib import crc32

    s = RecordsStage(
        "clean",
        Stage.model_validate({"from": "in", "to": "out", **ORDERS}),
        clock=lambda: 0.0,
        out_partitions=5,
    )
    batch = [msg(o, {"quantity": 1, "price": "1"}, key=None) for o in range(20)]  # type: ignore[arg-type]
    first = s.process(2, batch).messages
    again = s.process(2, batch).messages  # the replay
    assert [m.partition for m in first] == [m.partition for m in again]
    assert [m.partition for m in first] == [crc32(m.headers[0][1]) % 5 for m in first]
    assert len({m.partition for m in first}) > 1  # spread, not all in one
    keyed = s.process(2, [msg(1, {"quantity": 1, "price": "1"})]).messages
    assert keyed[0].partition is None  # a key: the producer's partitioner, as before
