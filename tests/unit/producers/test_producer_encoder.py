"""Record encoder: key bytes, event time, raw passthrough, Avro and poison reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fixtures.avro import ORDER_PRICED

from headrace.errors import PoisonRecord
from producers.encoder import RecordEncoder, _ValidatingJson, event_time_ms
from schemas import AvroCodec, JsonCodec

SCHEMA = ORDER_PRICED


def test_event_time_from_every_shape() -> None:
    assert event_time_ms(datetime(2024, 1, 1, tzinfo=UTC)) == 1704067200000
    assert event_time_ms(datetime(2024, 1, 1)) == 1704067200000  # naive = UTC
    assert event_time_ms(date(2024, 1, 1)) == 1704067200000
    assert event_time_ms("2024-01-01T00:00:00Z") == 1704067200000
    assert event_time_ms("2024-01-01T01:00:00.123+01:00") == 1704067200123
    assert event_time_ms(1704067200000.0) == 1704067200000
    assert event_time_ms(1704067200000) == 1704067200000
    for bad in (None, True, "yesterday"):
        with pytest.raises(ValueError):
            event_time_ms(bad)


def test_json_key_value_and_timestamp() -> None:
    enc = RecordEncoder(JsonCodec(), ["id", "kind"], "at")
    key, value, ts = enc.encode(
        {"id": 7, "kind": "a", "at": "2024-01-01T00:00:00Z", "p": Decimal("0.30")}
    )
    assert key == b'[7,"a"]'
    assert orjson.loads(value)["p"] == "0.30"
    assert ts == 1704067200000


def test_raw_bytes_are_sent_unchanged_by_plain_json_only() -> None:
    raw = b'{"id": 1, "p": 0.100000000000000000001}'
    assert RecordEncoder(JsonCodec(), ["id"]).encode({"id": 1, "p": 0.1}, raw)[1] == raw
    avro = RecordEncoder(AvroCodec(SCHEMA, 3), ["id"])
    assert avro.encode({"id": 1, "price": "2.50"}, b"{}")[1][:5] == b"\x00\x00\x00\x00\x03"


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ({"price": "1.00"}, "id", "key field 'id' missing"),
        ({"id": 1, "price": "1.00", "at": "soon"}, "at", "timestamp field 'at'"),
        ({"id": 1, "price": "lots", "at": 0}, "price", "schema mismatch"),
    ],
)
def test_poison_names_the_field(value, field, reason) -> None:
    enc = RecordEncoder(AvroCodec(SCHEMA, 1), ["id"], "at")
    with pytest.raises(PoisonRecord) as err:
        enc.encode(value)
    assert reason in str(err.value)
    assert err.value.field == field


def test_best_effort_parts_for_dead_letters() -> None:
    enc = RecordEncoder(AvroCodec(SCHEMA, 1), ["id"])
    assert enc.best_effort({"id": 4, "price": "x"}) == (b"4", b'{"id":4,"price":"x"}')
    assert enc.best_effort({"price": "x"}, b"orig") == (None, b"orig")


def test_encode_many_equals_encoding_one_by_one_and_finds_the_poison() -> None:
    enc = RecordEncoder(JsonCodec(), ["id"], "at")
    good: list[dict[str, Any]] = [
        {"id": "a", "at": "2024-01-01T00:00:00Z"},
        {"id": 7, "at": datetime(2024, 1, 1, 0, 0, 1)},
        {"id": True, "at": 1704067202000, "p": Decimal("1.50")},
    ]
    raws = [b'{"id": "a", "at": "2024-01-01T00:00:00Z"}', None, None]
    fast = enc.encode_many(good, raws)
    assert not fast.poison
    one = [enc.encode(v, r) for v, r in zip(good, raws, strict=True)]
    assert fast.keys is not None and fast.times is not None
    assert list(zip(fast.keys, fast.datas, fast.times, strict=True)) == one
    assert fast.keys == [b"a", b"7", b"true"] and fast.datas[0] == raws[0]
    mixed: list[dict[str, Any] | None] = [*good, {"at": 0}, {"id": 1, "at": "soon"}, None]
    out = enc.encode_many(mixed, None)
    assert sorted(out.poison) == [3, 4, 5]
    assert "key field 'id'" in str(out.poison[3]) and "timestamp field" in str(out.poison[4])
    assert out.datas[3:] == [None, None, None]
    assert out.datas[:3] == [enc.encode(v)[1] for v in good]  # no raws: encoded values
    plain = RecordEncoder(JsonCodec()).encode_many([{"x": 1}], [b'{"x": 1}'])
    assert (plain.keys, plain.datas, plain.times) == (None, [b'{"x": 1}'], None)


def test_text_event_times_by_whole_column_equal_event_time_ms() -> None:
    """The column fast path (every time ISO text with an offset) floors exactly as
    event_time_ms does: sub-millisecond fractions, offsets, times before 1970."""
    times = [
        "2024-05-01T00:00:05Z",
        "2024-05-01T00:00:05.0019Z",
        "2024-05-01T00:00:05.9999999+00:00",
        "2024-05-01T02:00:05.5+02:00",
        "2024-04-30T23:30:05-00:30",
        "1969-12-31T23:59:59.9995Z",
        "0001-01-01T00:00:00Z",
    ]
    enc = RecordEncoder(JsonCodec(), ["k"], "at")
    out = enc.encode_many([{"k": str(i), "at": t} for i, t in enumerate(times)], None)
    assert out.times == [event_time_ms(t) for t in times]
    assert out.times[1] == 1714521605001 and out.times[5] == -1
    naive = enc.encode_many([{"k": "a", "at": "2024-05-01T00:00:05"}, {"k": "b", "at": 5}], None)
    assert naive.times == [1714521605000, 5]  # not all aware text: one by one, same rules


def test_json_checked_against_a_schema_encodes_good_records_and_rejects_bad_ones() -> None:
    """``schema:`` with JSON output: valid records are JSON, invalid ones poison (a crash on
    every valid record was a bug)."""
    enc = RecordEncoder(_ValidatingJson(AvroCodec(SCHEMA, 0)), ["id"])
    key, data, _ts = enc.encode({"id": 7, "price": Decimal("1.50")})
    assert key == b"7" and orjson.loads(data) == {"id": 7, "price": "1.50"}
    many = enc.encode_many([{"id": 1, "price": "2.00"}, {"id": "x", "price": "1"}], None)
    assert many.datas[0] is not None and orjson.loads(many.datas[0])["id"] == 1
    assert set(many.poison) == {1} and "schema mismatch" in str(many.poison[1])
    # the MySQL source writes naive datetimes as UTC, through the same check
    naive = _ValidatingJson(AvroCodec(SCHEMA, 0)).as_naive_utc()
    assert naive.encode({"id": 1, "price": "1.00"}) == b'{"id":1,"price":"1.00"}'
    assert JsonCodec().as_naive_utc().encode({"t": datetime(2024, 1, 1)}) == (
        b'{"t":"2024-01-01T00:00:00+00:00"}'
    )
