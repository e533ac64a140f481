"""Avro codec: Confluent framing, logical types, decimals, nulls, unicode, mismatches."""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from fixtures.avro import NOTE, ORDER_ROW, record

from schemas import AvroCodec, SchemaMismatch, split_wire

#: the MySQL row's order (fixtures.avro.ORDER_ROW) and every other logical type and null
SCHEMA = record(
    "order",
    *ORDER_ROW["fields"],
    {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    NOTE,
    {"name": "blob", "type": ["null", "bytes"], "default": None},
)


def _value(**over):
    v = {
        "id": 7,
        "price": Decimal("1234.50"),
        "at": datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
        "day": date(2024, 5, 1),
        "ref": UUID("12345678-1234-5678-1234-567812345678"),
        "name": "Zoë 東京 🚀",
        "note": None,
        "blob": b"\x00\xff",
    }
    v.update(over)
    return v


def test_wire_format_is_magic_zero_then_big_endian_id() -> None:
    data = AvroCodec(SCHEMA, 513).encode(_value())
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == 513
    assert split_wire(data)[0] == 513


def test_round_trip_logical_types_nulls_unicode() -> None:
    codec = AvroCodec(SCHEMA, 1)
    out = codec.decode(codec.encode(_value()))
    assert out["price"] == Decimal("1234.50")
    assert out["at"] == datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    assert out["day"] == date(2024, 5, 1)
    assert str(out["ref"]) == "12345678-1234-5678-1234-567812345678"
    assert out["name"] == "Zoë 東京 🚀"
    assert out["note"] is None
    assert out["blob"] == b"\x00\xff"


def test_text_values_become_logical_types() -> None:
    codec = AvroCodec(SCHEMA, 1)
    out = codec.decode(
        codec.encode(
            _value(
                price="0.30",
                at="2024-05-01T12:00:00Z",
                day="2024-05-02",
                ref="12345678-1234-5678-1234-567812345678",
            )
        )
    )
    assert out["price"] == Decimal("0.30")
    assert out["at"] == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert out["day"] == date(2024, 5, 2)


def test_naive_datetime_is_utc() -> None:
    codec = AvroCodec(SCHEMA, 1)
    out = codec.decode(codec.encode(_value(at=datetime(2024, 1, 1, 0, 0, 0))))
    assert out["at"] == datetime(2024, 1, 1, tzinfo=UTC)


def test_decimal_exactness() -> None:
    codec = AvroCodec(SCHEMA, 1)
    a = codec.decode(codec.encode(_value(price=Decimal("0.1") + Decimal("0.2"))))["price"]
    assert a == Decimal("0.30")


def test_missing_field_names_the_field() -> None:
    v = _value()
    del v["name"]
    with pytest.raises(SchemaMismatch) as err:
        AvroCodec(SCHEMA, 1).encode(v)
    assert err.value.field == "name"
    assert "name" in str(err.value)


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(SchemaMismatch) as err:
        AvroCodec(SCHEMA, 1).encode(_value(id="seven"))
    assert err.value.field == "id"


def test_null_for_non_nullable_is_a_mismatch() -> None:
    with pytest.raises(SchemaMismatch):
        AvroCodec(SCHEMA, 1).encode(_value(name=None))


def test_decode_rejects_unframed_and_foreign_ids() -> None:
    codec = AvroCodec(SCHEMA, 1)
    with pytest.raises(SchemaMismatch, match="magic"):
        codec.decode(b'{"id": 1}')
    with pytest.raises(SchemaMismatch, match="schema id 2"):
        codec.decode(AvroCodec(SCHEMA, 2).encode(_value()))
