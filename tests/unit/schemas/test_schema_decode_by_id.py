"""Avro records decode by their schema id: local registry file or a Confluent registry."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.avro import ORDER_PRICED

from schemas import (
    AvroCodec,
    AvroDecoder,
    ConfluentRegistry,
    LocalRegistry,
    RecordCodec,
    SchemaMismatch,
)

ORDER = ORDER_PRICED


def test_local_registry_decodes_old_records_after_the_schema_changed(tmp_path: Path) -> None:
    (tmp_path / "order.avsc").write_text(json.dumps(ORDER))
    registry = LocalRegistry(tmp_path)
    sid = registry.schema_id("order", "orders.raw", ORDER)
    data = AvroCodec(ORDER, sid).encode({"id": 7, "price": Decimal("12.50"), "note": "ü"})
    changed = {**ORDER, "fields": [*ORDER["fields"], {"name": "x", "type": "int", "default": 0}]}
    (tmp_path / "order.avsc").write_text(json.dumps(changed))
    assert registry.schema_id("order", "orders.raw", changed) == sid + 1
    decoder = AvroDecoder(LocalRegistry(tmp_path))
    assert decoder.decode(data) == {"id": 7, "price": Decimal("12.50"), "note": "ü"}
    assert RecordCodec(LocalRegistry(tmp_path)).decode_value(data) == {
        "id": 7,
        "price": Decimal("12.50"),
        "note": "ü",
    }


def test_unknown_schema_id_is_a_schema_mismatch(tmp_path: Path) -> None:
    data = AvroCodec(ORDER, 99).encode({"id": 1, "price": Decimal("1.00")})
    with pytest.raises(SchemaMismatch, match="schema id 99 is not in"):
        AvroDecoder(LocalRegistry(tmp_path)).decode(data)


def test_sinks_without_a_registry_say_so() -> None:
    data = AvroCodec(ORDER, 3).encode({"id": 1, "price": Decimal("1.00")})
    with pytest.raises(ValueError, match="schema id 3"):
        RecordCodec().decode_value(data)
    assert RecordCodec().decode_value(b'{"a": 1}') == {"a": 1}
    assert RecordCodec().decode_value(None) is None


def test_confluent_registry_looks_ids_up_once() -> None:
    calls: list[int] = []

    class Client:
        def get_schema(self, schema_id: int) -> SimpleNamespace:
            calls.append(schema_id)
            return SimpleNamespace(schema_str=json.dumps(ORDER))

    decoder = AvroDecoder(ConfluentRegistry("http://registry", client=Client()))
    data = AvroCodec(ORDER, 41).encode({"id": 2, "price": Decimal("3.10")})
    for _ in range(3):
        assert decoder.decode(data)["price"] == Decimal("3.10")
    assert calls == [41]
