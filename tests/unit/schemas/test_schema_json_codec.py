"""JsonCodec: Decimals travel as exact plain-notation strings, whatever their exponent."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from schemas import JsonCodec


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
