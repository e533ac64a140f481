"""JsonCodec: Decimals travel as exact plain-notation strings, whatever their exponent."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal

import orjson
import pytest

from schemas import JsonCodec, encode_key


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.30", "0.30"),
        ("-0", "-0"),
        ("1E+2", "100"),
        ("5.0E+3", "5000"),
        ("1e-10", "0.0000000001"),
        ("0E-7", "0.0000000"),
        ("123456789012345678901234567890.123", "123456789012345678901234567890.123"),
    ],
)
def test_decimal_is_a_plain_exact_string(value: str, text: str) -> None:
    assert orjson.loads(JsonCodec().encode({"d": Decimal(value)})) == {"d": text}


def test_round_trip_and_other_types() -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode({"b": b"\x01", "s": {2, 1}, "n": None})) == {
        "b": "01",
        "s": [1, 2],
        "n": None,
    }
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        codec.encode({"x": object()})


def test_encoded_values_and_keys_hold_only_their_bytes() -> None:
    """orjson >= 3.12 returns every result in its whole write buffer (4 KiB or more); a stage
    holds a batch of 10,000 outputs, so each must be right-sized (it was 40 MiB a batch).
    Same bytes as orjson writes, in under 512 bytes of memory each (tracemalloc)."""
    codec = JsonCodec()
    value = {"order_id": 7, "customer_id": "c001", "price": Decimal("12.25"), "note": None}
    assert codec.encode(value) == orjson.dumps({**value, "price": "12.25"})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [codec.encode(value) for _ in range(1000)]
        held += [encode_key(["c001", 7]) for _ in range(1000)]
        per = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert per < 512, f"{per:.0f} bytes held per encoded value"
