"""Request bodies: JSON, JSON arrays and JSON lines by Content-Type; malformed JSON names its
line and column; bodies past max_body are refused before parsing (413)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.bodies import (
    BodyError,
    BodyTooLarge,
    UnsupportedMediaType,
    media_type,
    parse_records,
    read_body,
)


def test_one_json_record_is_a_single_record() -> None:
    items, single = parse_records(b'{"a": 1}', "application/json")
    assert single
    assert [(i.index, i.line, i.value) for i in items] == [(0, None, {"a": 1})]


def test_a_json_array_is_one_record_per_item() -> None:
    items, single = parse_records(b'[{"a": 1}, {"a": 2}, 3]', "application/json; charset=utf-8")
    assert not single
    assert [i.value for i in items] == [{"a": 1}, {"a": 2}, 3]
    assert [i.index for i in items] == [0, 1, 2]


def test_jsonl_is_one_record_per_line_blank_lines_skipped_raw_kept() -> None:
    body = b'{"a": 1}\n\n{"a": 2}\r\n'
    items, single = parse_records(body, "application/x-ndjson")
    assert not single
    assert [(i.index, i.line, i.value, i.raw) for i in items] == [
        (0, 1, {"a": 1}, b'{"a": 1}'),
        (1, 3, {"a": 2}, b'{"a": 2}'),
    ]
    assert items[1].where() == "record 1 (line 3)"


@pytest.mark.parametrize(
    "kind", ["application/jsonl", "application/json-lines", "application/x-jsonlines"]
)
def test_other_jsonl_media_types(kind: str) -> None:
    items, _ = parse_records(b'{"a": 1}', kind)
    assert items[0].value == {"a": 1}


def test_malformed_json_names_line_and_column() -> None:
    with pytest.raises(BodyError, match=r"line 2 column 7") as err:
        parse_records(b'{"a": 1,\n "b": }', "application/json")
    assert err.value.status == 400


def test_malformed_jsonl_names_the_body_line() -> None:
    with pytest.raises(BodyError, match=r"malformed JSON at line 3 column 7"):
        parse_records(b'{"a": 1}\n{"a": 2}\n{"a": ]\n', "application/x-ndjson")


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (b"", "application/json", "empty"),
        (b"[]", "application/json", "array is empty"),
        (b"\n\n", "application/x-ndjson", "no records"),
    ],
)
def test_no_records_is_a_400(body: bytes, kind: str, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        parse_records(body, kind)


def test_other_content_types_are_415() -> None:
    with pytest.raises(UnsupportedMediaType) as err:
        parse_records(b"a,b", "text/csv")
    assert err.value.status == 415
    assert "text/csv" in str(err.value)
    with pytest.raises(UnsupportedMediaType, match=r"\(none\)"):
        parse_records(b"{}", None)


def test_media_type_drops_parameters_and_case() -> None:
    assert media_type("Application/JSON; charset=UTF-8") == "application/json"
    assert media_type(None) == ""


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_read_body_joins_chunks_up_to_max_body() -> None:
    assert asyncio.run(read_body(_chunks(b"ab", b"cd"), 4)) == b"abcd"


def test_read_body_stops_past_max_body_with_413() -> None:
    with pytest.raises(
        BodyTooLarge, match="at least 5 bytes, over the gateway's max_body of 4"
    ) as e:
        asyncio.run(read_body(_chunks(b"ab", b"cde", b"never read"), 4))
    assert e.value.status == 413


def test_read_body_refuses_a_declared_length_before_reading() -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("read")
        yield b""

    with pytest.raises(BodyTooLarge, match="is 100 bytes"):
        asyncio.run(read_body(never(), 10, content_length="100"))
