"""Records checked against their topic: keys, event times, JSON Schema and Avro, with
reasons that name the record and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.bodies import Item, parse_records
from gateway.validate import TopicValidator, build_validators, event_time_ms
from headrace.config import Pipeline
from headrace.config.gateway import GatewayTopic
from headrace.errors import ConfigError
from schemas import AvroCodec

NOW = 1_700_000_000_000
SCHEMA = {
    "type": "object",
    "required": ["order_id", "qty"],
    "properties": {"order_id": {"type": "integer"}, "qty": {"type": "integer", "minimum": 1}},
}
AVRO = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "order_id", "type": "long"}, {"name": "qty", "type": "int"}],
}


def topic(**kw: Any) -> GatewayTopic:
    return GatewayTopic.model_validate(kw)


def items(*values: Any) -> list[Item]:
    return [Item(i, None, v) for i, v in enumerate(values)]


def test_key_from_the_topic_field_time_from_the_request() -> None:
    v = TopicValidator("orders", topic(key="order_id"))
    ok, bad = v.check(items({"order_id": 42, "qty": 1}), now_ms=NOW)
    assert bad == []
    assert ok[0].key == b"42"
    assert ok[0].timestamp_ms == NOW
    assert orjson.loads(ok[0].value) == {"order_id": 42, "qty": 1}


def test_several_key_fields_are_a_json_array_like_sources_write() -> None:
    v = TopicValidator("t", topic(key=["a", "b"]))
    ok, _ = v.check(items({"a": 1, "b": "x"}), now_ms=NOW)
    assert ok[0].key == b'[1,"x"]'


def test_explicit_key_only_without_key_fields() -> None:
    plain = TopicValidator("t", topic())
    ok, _ = plain.check(items({"a": 1}), now_ms=NOW, explicit_key="k1")
    assert ok[0].key == b"k1"
    keyed = TopicValidator("t", topic(key="a"))
    ok, _ = keyed.check(items({"a": 1}), now_ms=NOW, explicit_key="k1")
    assert ok[0].key == b"1", "the topic's key fields win"
    ok, _ = plain.check(items({"a": 1}), now_ms=NOW)
    assert ok[0].key is None


def test_time_field_iso_or_epoch_ms() -> None:
    v = TopicValidator("t", topic(time="ts"))
    ok, bad = v.check(
        items(
            {"ts": "2023-11-14T22:13:20Z"}, {"ts": 1_600_000_000_000}, {"ts": "2023-11-14T22:13:20"}
        ),
        now_ms=0,
    )
    assert bad == []
    assert [m.timestamp_ms for m in ok] == [NOW, 1_600_000_000_000, NOW]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([1, 2], "record 0: expected a JSON object, got an array"),
        ("x", "record 0: expected a JSON object, got a string"),
        ({"ts": 1}, "record 0: key field 'id' is missing"),
        ({"id": 1}, "record 0: time field 'ts' is missing"),
        (
            {"id": 1, "ts": "yesterday"},
            "record 0: time field 'ts': 'yesterday' is not an ISO-8601 time",
        ),
        ({"id": 1, "ts": None}, "record 0: time field 'ts': None is not a time"),
        ({"id": 1, "ts": True}, "record 0: time field 'ts': True is not a time"),
    ],
)
def test_rejections_name_the_record_and_the_field(value: Any, reason: str) -> None:
    v = TopicValidator("t", topic(key="id", time="ts"))
    ok, bad = v.check(items(value), now_ms=NOW)
    assert ok == []
    assert [r.reason for r in bad] == [reason]
    assert bad[0].value == orjson.dumps(value), "the dead letter keeps the record as posted"


def test_json_schema_reasons_name_the_field() -> None:
    v = TopicValidator("t", topic(key="order_id", schema=SCHEMA), json_schema=SCHEMA)
    ok, bad = v.check(
        items({"order_id": 1, "qty": 2}, {"order_id": 2, "qty": 0}, {"order_id": "3", "qty": 1}),
        now_ms=NOW,
    )
    assert [m.index for m in ok] == [0]
    assert [r.reason for r in bad] == [
        "record 1: does not match the topic's JSON Schema: field 'qty': 0 is less than the "
        "minimum of 1",
        "record 2: does not match the topic's JSON Schema: field 'order_id': '3' is not of "
        "type 'integer'",
    ]
    assert bad[0].key == b"2", "the rejected record keeps its key when it can be read"


def test_a_missing_required_field_is_named() -> None:
    v = TopicValidator("t", topic(schema=SCHEMA), json_schema=SCHEMA)
    _, bad = v.check(items({"order_id": 1}), now_ms=NOW)
    assert bad[0].reason == (
        "record 0: does not match the topic's JSON Schema: 'qty' is a required property"
    )


def test_avro_topics_write_confluent_framed_avro_and_reject_mismatches() -> None:
    codec = AvroCodec(AVRO, 7)
    v = TopicValidator("t", topic(format="avro", schema="order", key="order_id"), avro=codec)
    ok, bad = v.check(items({"order_id": 5, "qty": 2}, {"order_id": 6}), now_ms=NOW)
    assert ok[0].value[:5] == b"\x00\x00\x00\x00\x07"
    assert codec.decode(ok[0].value) == {"order_id": 5, "qty": 2}
    assert [r.reason for r in bad] == ["record 1: field 'qty' is missing"]


def test_jsonl_lines_are_produced_as_sent() -> None:
    body = b'{"b": 1.10, "a": 1}\n'
    parsed, _ = parse_records(body, "application/x-ndjson")
    ok, _ = TopicValidator("t", topic()).check(parsed, now_ms=NOW)
    assert ok[0].value == b'{"b": 1.10, "a": 1}'


def test_envelope_form_carries_key_and_time() -> None:
    v = TopicValidator("t", topic())
    ok, bad = v.check(
        items(
            {"value": {"a": 1}, "key": "k", "time": 5},
            {"value": {"a": 2}},
            {"a": 3},
            {"value": {"a": 4}, "extra": 1},
        ),
        now_ms=NOW,
        envelope=True,
    )
    assert [(m.index, m.key, m.timestamp_ms) for m in ok] == [(0, b"k", 5), (1, None, NOW)]
    assert orjson.loads(ok[0].value) == {"a": 1}
    assert [r.reason for r in bad] == [
        'record 2: expected an envelope {"value": {...}, "key": ..., "time": ...} with a JSON '
        "object as value",
        "record 3: unknown envelope key(s) extra",
    ]


def test_long_reasons_are_cut() -> None:
    v = TopicValidator("t", topic(key="x" * 400))
    _, bad = v.check(items({}), now_ms=NOW)
    assert len(bad[0].reason) == 300 and bad[0].reason.endswith("…")


def test_event_time_ms() -> None:
    assert event_time_ms("1970-01-01T00:00:01+00:00") == 1000
    assert event_time_ms(12.9) == 12
    with pytest.raises(ValueError, match="64-bit"):
        event_time_ms(2**70)


def _pipeline(tmp_path: Path, topics: dict[str, Any]) -> Pipeline:
    data = {"name": "p", "kafka": {"bootstrap_servers": "h:9092"}, "gateway": {"topics": topics}}
    pipeline = Pipeline.model_validate(data)
    pipeline.attach_source(tmp_path / "pipeline.yaml", frozenset(), {})
    return pipeline


def test_build_validators_reads_json_schema_files_relative_to_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "order.schema.json").write_text(orjson.dumps(SCHEMA).decode())
    validators = build_validators(_pipeline(tmp_path, {"orders": {"schema": "order.schema.json"}}))
    _, bad = validators["orders"].check(items({"order_id": 1}), now_ms=NOW)
    assert "'qty' is a required property" in bad[0].reason


def test_a_missing_schema_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read") as err:
        build_validators(_pipeline(tmp_path, {"orders": {"schema": "nope.json"}}))
    assert err.value.key == "gateway.topics.orders.schema"
    with pytest.raises(ConfigError, match="schema 'order'") as err:
        build_validators(_pipeline(tmp_path, {"orders": {"format": "avro", "schema": "order"}}))
    assert err.value.key == "gateway.topics.orders.schema"


def test_avro_topics_get_their_registry_id(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "order.avsc").write_text(orjson.dumps(AVRO).decode())
    validators = build_validators(
        _pipeline(tmp_path, {"orders": {"format": "avro", "schema": "order"}})
    )
    ok, _ = validators["orders"].check(items({"order_id": 1, "qty": 1}), now_ms=NOW)
    assert ok[0].value[0] == 0 and int.from_bytes(ok[0].value[1:5], "big") >= 1
