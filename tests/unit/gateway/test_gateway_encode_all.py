"""The validator's batched JSON encoding writes exactly what ``JsonCodec`` writes for each
record, one at a time (the bytes a consumer reads must not depend on the batch)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.bodies import parse_records
from gateway.validate import TopicValidator, _encode_all
from headrace.config.gateway import GatewayTopic
from schemas import JsonCodec

VALUES: list[Any] = [
    {"a": 1, "b": "x"},
    {"f": 1e100, "g": -0.0, "h": 5e-324, "i": 1.2345678901234568e20, "j": 0.1},
    {"big": 2**64 - 1, "neg": -(2**63), "n": None, "t": True, "l": [1, [2, {"x": []}]]},
    {"s": '\x00\x1f\x7f"\\/\u2028é😀', "empty": "", "o": {}},
    {"k,}{": "],[", "nested": {"q": "}"}},
]


def test_batched_bytes_are_the_codecs_bytes() -> None:
    values = orjson.loads(orjson.dumps(VALUES))
    assert _encode_all(values) == [JsonCodec().encode(v) for v in values]


def test_a_value_orjson_refuses_falls_back_to_the_codec() -> None:
    deep: Any = {}
    for _ in range(253):  # orjson's depth limit is reached only once inside the list
        deep = {"d": deep}
    values = [{"a": 1}, deep]
    with pytest.raises(TypeError):
        orjson.dumps(values)
    assert _encode_all(values) == [JsonCodec().encode(v) for v in values]


def test_check_writes_each_record_as_the_codec_does_and_rejects_exactly() -> None:
    topic = GatewayTopic.model_validate(
        {"key": ["id"], "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    )
    validator = TopicValidator(
        "t", topic, json_schema={"type": "object", "properties": {"n": {"type": "integer"}}}
    )
    body = orjson.dumps([{"id": "a", "n": 1}, {"id": "b", "n": "x"}, [], {"id": 7, "f": 1e30}])
    items, _ = parse_records(body, "application/json")
    messages, rejections = validator.check(items, now_ms=5)
    assert [(m.index, m.key, m.value, m.timestamp_ms) for m in messages] == [
        (0, b"a", JsonCodec().encode({"id": "a", "n": 1}), 5),
        (3, b"7", JsonCodec().encode({"id": 7, "f": 1e30}), 5),
    ]
    assert [r.index for r in rejections] == [1, 2]
    assert "field 'n'" in rejections[0].reason
    assert rejections[1].reason == "record 2: expected a JSON object, got an array"
