"""Defects the source differential oracle (tests/oracle/test_source_oracle.py) found, one
regression test each: the seeds that showed them are named in each test."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from typing import Any

import pytest
from fixtures.native import require_native_reader

from producers.encoder import RecordEncoder
from producers.projection import Projection
from producers.s3_formats import parse
from producers.s3_gzip import GzipReader
from producers.s3_source import S3ObjectSource
from schemas import JsonCodec


class _S3:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def get_paginator(self, _name: str) -> Any:
        class P:
            def paginate(self, **_kw: Any) -> Any:
                yield {"Contents": [{"Key": "in/a", "ETag": '"e1"'}]}

        return P()

    def get_object(self, Bucket: str, Key: str, IfMatch: str, Range: str = "") -> Any:
        start = int(Range.removeprefix("bytes=").removesuffix("-") or 0)
        return {"Body": _Unseekable(self.body[start:])}


class _Unseekable(io.BytesIO):
    """An S3 body: read once, no seeking back."""

    def seekable(self) -> bool:
        return False


def _read(
    body: bytes, fmt: str, native: bool = False, time: str | None = None
) -> tuple[list[Any], list[Any]]:
    """(records as (position, key, value bytes), poison as (position, class)) of an S3
    source reading ``body``, configured as ``headrace produce`` does for plain JSON."""
    encoder = RecordEncoder(JsonCodec(), ["id"], time)
    fields = ["id", time] if time else ["id"]
    projection = None
    if fmt == "jsonl":
        projection = Projection(fields, key=["id"], time=time, native=native)
    src = S3ObjectSource(
        "s", _S3(body), bucket="b", file_format=fmt, encoder=encoder, projection=projection
    )
    src.restore(None)
    records, poison = [], []
    for batch in src.batches():
        rows = batch.rows()
        enc = rows.encoded or encoder.encode_many(rows.values, rows.raws)
        for i in range(len(rows)):
            where = rows.position(i)["line"]  # type: ignore[index]
            if i in enc.poison:
                poison.append((where, "PoisonRecord"))
            else:
                records.append((where, enc.keys[i], enc.datas[i]))  # type: ignore[index]
        poison += [(p.position["line"], p.error_class) for p in batch.poison]
    return records, sorted(poison)


def test_an_integer_key_past_64_bits_is_its_digits_next_to_poison_too() -> None:
    # seeds 3, 7, 12, ... (210 of 1,300): the line went through orjson, which reads such an
    # integer as a float: key b"1.8446744073709552e+19" (and the native reader said digits)
    line = b'{"id": 18446744073709551616}'
    for body in (line + b"\n", line + b"\nnot json\n"):
        records, _ = _read(body, "jsonl")
        assert records[0] == (1, b"18446744073709551616", line)


def test_a_number_past_the_double_range_in_a_field_not_read_does_not_depend_on_neighbours() -> None:
    # seeds 29, 115, 128, ... (47 of 1,300): a record in a clean chunk (msgspec skips the
    # field), poison in a chunk with poison (orjson refuses 1e400)
    line = b'{"id": 1, "x": 1e400}'
    for body in (line + b"\n", line + b"\n[]\n"):
        records, _ = _read(body, "jsonl")
        assert records == [(1, b"1", line)]
    assert _read(b'{"id": 1e400}\n', "jsonl") == ([], [(1, "JSONDecodeError")])


def test_the_native_reader_leaves_a_lone_surrogate_escape_to_the_python_path() -> None:
    require_native_reader()
    # seeds 1005, 1085: serde_json does not check escapes in a field it skips, so the native
    # reader made a record of a line the Python path (msgspec, orjson) refuses
    good = b'{"id": 1}'
    for bad in (b'{"id": 2, "x": "\\ud800"}', b'{"id": 2, "x": "\\udc00\\ud800"}'):
        body = good + b"\n" + bad + b"\n"
        python = _read(body, "jsonl", native=False)
        assert python == ([(1, b"1", good)], [(2, "JSONDecodeError")])
        assert _read(body, "jsonl", native=True) == python
    pair = b'{"id": 3, "x": "\\ud83d\\ude00"}'  # a pair is fine on both paths
    assert _read(pair + b"\n", "jsonl", native=True) == ([(1, b"3", pair)], [])


@pytest.mark.parametrize("seekable", [True, False])
def test_a_json_array_with_64_bit_boundary_integers_is_read_whole(seekable: bool) -> None:
    # seeds 6, 8, 14, ... (201 of 1,300): ijson's C parser with use_float stops at an
    # integer past the signed 64-bit range ("integer overflow", ijson issue #153), and the
    # rest of the object was lost
    body = (
        b'[{"id": 1}, {"id": -9223372036854775808}, {"id": 18446744073709551615},'
        b' {"id": 2, "x": 1e400}, {"id": 10000000000000000000000000000000}, {"id": 3, "f": 0.5}]'
    )
    if seekable:  # parse() reads the object again by seeking back...
        chunks = list(parse(io.BytesIO(body), "json", key="k", etag="e", gzipped=False))
        values = [v for c in chunks for v in c.values]
        assert [v["id"] for v in values] == [1, -(2**63), 2**64 - 1, 10**31, 3]
        assert values[-1]["f"] == 0.5 and type(values[-1]["f"]) is float
        [bad] = [p for c in chunks for p in c.poison]
        assert bad.position["line"] == 4 and "past the double range" in bad.message
        return
    records, poison = _read(body, "json")  # ... the S3 source with a GET from byte 0
    assert [(n, k) for n, k, _ in records] == [
        (1, b"1"),
        (2, b"-9223372036854775808"),
        (3, b"18446744073709551615"),
        (6, b"3"),
    ]
    assert poison == [(4, "PoisonRecord"), (5, "PoisonRecord")]  # 1e400; past 64 bits


def test_a_bool_event_time_is_poison_after_an_equal_number_too() -> None:
    # seed 2741: the encoder's last-time cache took True for the 1 before it (True == 1)
    encoder = RecordEncoder(JsonCodec(), None, "at")
    enc = encoder.encode_many([{"at": 1}, {"at": True}, {"at": 0}, {"at": False}], None)
    assert enc.times == [1, None, 0, None]
    assert sorted(enc.poison) == [1, 3] and "True is not a time" in str(enc.poison[1])


def test_an_event_time_past_64_bits_is_poison_not_a_stopped_source() -> None:
    # found checking the oracle's expectations against confluent-kafka: produce() raises
    # OverflowError for such a timestamp, which stopped the source
    encoder = RecordEncoder(JsonCodec(), None, "at")
    enc = encoder.encode_many([{"at": 2**63 - 1}, {"at": 2**63}, {"at": -(2**63) - 1}], None)
    assert enc.times == [2**63 - 1, None, None]
    assert sorted(enc.poison) == [1, 2] and "64-bit range" in str(enc.poison[1])
    records, poison = _read(b'{"id": 1, "at": 9223372036854775808}\n', "jsonl", time="at")
    assert (records, poison) == ([], [(1, "PoisonRecord")])


def _member(flags: int, extra: bytes, data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = deflate.compress(data) + deflate.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data))
    return b"\x1f\x8b\x08" + bytes([flags]) + b"\x00" * 6 + extra + payload + trailer


def _decode(body: bytes) -> tuple[bytes, str | None]:
    reader = GzipReader(io.BytesIO(body))
    out = b""
    try:
        while block := reader.read(1 << 20):
            out += block
    except (EOFError, gzip.BadGzipFile) as exc:
        return out, type(exc).__name__
    return out, None


def test_gzip_header_crc_and_reserved_flags_are_checked_as_zlib_checks_them() -> None:
    # found writing the oracle's reference (zlib): a damaged flags byte that sets FHCRC made
    # the reader skip two bytes and decode garbage, where zlib refuses the header
    data = b'{"id": 1}\n'
    header = b"\x1f\x8b\x08\x02" + b"\x00" * 6
    good = _member(2, struct.pack("<H", zlib.crc32(header) & 0xFFFF), data)
    assert _decode(good) == (data, None) == (zlib.decompress(good, wbits=31), None)
    bad = _member(2, b"\x00\x00", data)
    assert _decode(bad) == (b"", "BadGzipFile")
    with pytest.raises(zlib.error):
        zlib.decompress(bad, wbits=31)
    assert _decode(_member(0x20, b"", data)) == (b"", "BadGzipFile")
