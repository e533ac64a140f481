"""Issue #15, defects 3 and 4: a UTF-8 BOM at the start of a text object is ignored (every
format, gzip too, native reader too); a truncated or corrupt gzip object gives every record
decoded whole before the damage, then one dead letter saying where (decoded byte offset,
line) with the unfinished line's bytes as its value."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from typing import Any

import orjson
import pytest
from fixtures.native import require_native_reader

from producers.batch import Poison
from producers.encoder import RecordEncoder
from producers.projection import Projection
from producers.s3_formats import parse
from producers.s3_source import S3ObjectSource
from schemas import JsonCodec

BOM = "\ufeff".encode()


def _items(data: bytes, fmt: str, *, gz: bool = False) -> tuple[list[Any], list[Poison]]:
    """(records as (position, value), poison) of one object body."""
    records: list[Any] = []
    poison: list[Poison] = []
    for chunk in parse(io.BytesIO(data), fmt, key="k", etag="e", gzipped=gz):
        records += zip(chunk.lines, chunk.values, strict=True)
        poison += chunk.poison
    return records, poison


def _decodable(compressed: bytes) -> bytes:
    """What zlib decodes of ``compressed`` fed one byte at a time, up to its damage."""
    d = zlib.decompressobj(wbits=31)
    out = []
    for i in range(len(compressed)):
        try:
            out.append(d.decompress(compressed[i : i + 1]))
        except zlib.error:
            break
    return b"".join(out)


class _S3:
    """A one-object fake S3 client (ranged GETs too)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.ranges: list[str] = []

    def get_paginator(self, _name: str) -> Any:
        body = self.body

        class P:
            def paginate(self, **_kw: Any) -> Any:
                yield {"Contents": [{"Key": "in/a.gz", "ETag": f'"e{len(body)}"'}]}

        return P()

    def get_object(self, Bucket: str, Key: str, IfMatch: str, Range: str = "") -> Any:
        if not Range:
            return {"Body": io.BytesIO(self.body)}
        self.ranges.append(Range)
        start = int(Range.removeprefix("bytes=").removesuffix("-"))
        return {"Body": io.BytesIO(self.body[start:])}


class _Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


def _source_read(body: bytes, fmt: str, projection: Projection | None = None) -> Any:
    """(records as (line, key, value), poison) of an S3 source reading one gzip object."""
    encoder = RecordEncoder(JsonCodec(), ["id"], None)
    client = _S3(body)
    src = S3ObjectSource(
        "s",
        client,
        bucket="b",
        prefix="in/",
        file_format=fmt,
        gzipped=True,
        encoder=encoder,
        projection=projection,
        batch_records=1000,
    )
    src.restore(None)
    records, poison = [], []
    for batch in src.batches():
        rows = batch.rows()
        enc = rows.encoded or encoder.encode_many(rows.values, rows.raws)
        assert enc.keys is not None
        for i in range(len(rows)):
            records.append((rows.position(i)["line"], enc.keys[i], enc.datas[i]))  # type: ignore[index]
        poison += batch.poison
    return records, poison, client


# -- defect 3: a byte order mark ------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_a_bom_before_the_first_jsonl_line_is_ignored(gz: bool) -> None:
    data = BOM + b'{"id": 1}\r\n{"id": 2}\n'
    body = gzip.compress(data) if gz else data
    records, poison = _items(body, "jsonl", gz=gz)
    assert records == [(1, {"id": 1}), (2, {"id": 2})]
    assert poison == []


@pytest.mark.parametrize("gz", [False, True])
def test_a_bom_before_a_json_document_or_array_is_ignored(gz: bool) -> None:
    for data, expected in [
        (BOM + b'{"id": 1}', [(1, {"id": 1})]),
        (BOM + b' \n[{"id": 1}, {"id": 2}]', [(1, {"id": 1}), (2, {"id": 2})]),
    ]:
        body = gzip.compress(data) if gz else data
        assert _items(body, "json", gz=gz) == (expected, [])


def test_a_bom_before_a_gzip_csv_header_is_ignored() -> None:
    records, poison = _items(gzip.compress(BOM + b"id,n\n1,a\n"), "csv", gz=True)
    assert records == [(1, {"id": "1", "n": "a"})] and poison == []


@pytest.mark.parametrize("native", [False, True])
def test_a_bom_gives_the_same_records_with_and_without_the_native_reader(native: bool) -> None:
    if native:
        require_native_reader()
    lines = [b'{"id": %d}' % i for i in range(1, 4)]
    body = gzip.compress(BOM + b"\n".join(lines) + b"\n")
    projection = Projection(["id"], key=["id"], native=native)
    assert projection.native is native
    records, poison, _ = _source_read(body, "jsonl", projection)
    assert records == [(i, b"%d" % i, lines[i - 1]) for i in range(1, 4)]
    assert poison == []


# -- defect 4: a truncated or corrupt gzip object -----------------------------------------


def _lines(count: int, seed: int = 1) -> list[bytes]:
    rnd = random.Random(seed)
    return [b'{"id": %d, "r": %d}\n' % (i, rnd.randrange(10**9)) for i in range(1, count + 1)]


def test_a_truncated_gzip_jsonl_object_gives_every_line_before_the_cut() -> None:
    lines = _lines(100)
    whole = gzip.compress(b"".join(lines))
    cut = whole[: len(whole) * 6 // 10]
    decoded = _decodable(cut)
    complete = decoded.count(b"\n")
    assert complete >= 40  # about half the lines are recoverable
    records, poison = _items(cut, "jsonl", gz=True)
    assert [n for n, _ in records] == list(range(1, complete + 1))
    assert [v["id"] for _, v in records] == list(range(1, complete + 1))
    [letter] = poison
    assert letter.error_class == "EOFError"
    where = {"key": "k", "etag": "e", "line": complete + 1, "offset": len(decoded)}
    assert letter.position == where
    assert letter.raw == decoded[decoded.rindex(b"\n") + 1 :]  # the unfinished line's bytes
    assert lines[complete].startswith(letter.raw)
    assert f"line {complete + 1}" in letter.message and str(len(decoded)) in letter.message


@pytest.mark.parametrize("native", [False, True])
def test_an_s3_source_hands_on_the_lines_of_a_truncated_object(native: bool) -> None:
    if native:
        require_native_reader()
    lines = _lines(100)
    cut = gzip.compress(b"".join(lines))[:-300]
    complete = _decodable(cut).count(b"\n")
    projection = Projection(["id"], key=["id"], native=native)
    records, poison, _ = _source_read(cut, "jsonl", projection)
    assert [(n, k, v) for n, k, v in records] == [
        (i, b"%d" % i, lines[i - 1].rstrip(b"\n")) for i in range(1, complete + 1)
    ]
    assert [(p.error_class, p.position["line"]) for p in poison] == [("EOFError", complete + 1)]


def _corrupt(count: int) -> tuple[bytes, bytes]:
    """A gzip body of ``count`` incompressible-ish lines with a corrupt deflate block a third
    of the way in (zlib: "invalid block type"; most damage decodes to garbage up to a CRC
    mismatch at the end instead), and what zlib decodes of it before the damage."""
    data = b"".join(_lines(count, seed=3))
    good = gzip.compress(data, 1, mtime=0)
    at = len(good) * 32 // 100
    bad = good[:at] + b"\xff" * 8 + good[at + 8 :]
    with pytest.raises(zlib.error, match="invalid block type"):
        zlib.decompress(bad, wbits=31)
    decoded = _decodable(bad)
    assert 1 << 20 < len(decoded) < len(data) // 2  # more than one old 1 MiB read is decoded
    return bad, decoded


def _objects(decoded: bytes, key: str | None = None) -> list[int]:
    """The numbers of the lines decoded whole that are JSON objects (with field ``key``):
    damage decodes to garbage for a while before zlib notices it, those lines are poison."""
    out = []
    for n, line in enumerate(decoded.split(b"\n")[:-1], 1):
        try:
            value = orjson.loads(line)
            if type(value) is dict and (key is None or type(value.get(key)) in (int, str)):
                out.append(n)
        except orjson.JSONDecodeError:
            pass
    return out


def test_a_corrupt_block_in_a_large_object_loses_no_line_decoded_before_it() -> None:
    bad, decoded = _corrupt(150_000)
    complete = decoded.count(b"\n")
    for stream in (io.BytesIO(bad), _Unseekable(bad)):
        records, poison = [], []
        reopen = None if stream.seekable() else (lambda offset: io.BytesIO(bad[offset:]))
        for chunk in parse(stream, "jsonl", key="k", etag="e", gzipped=True, reopen=reopen):
            records += chunk.lines
            poison += chunk.poison
        assert records == _objects(decoded)
        assert sorted(records + [p.position["line"] for p in poison]) == list(
            range(1, complete + 2)
        )
        letter = poison[-1]
        assert letter.error_class == "BadGzipFile"
        assert letter.position["line"] == complete + 1
        assert letter.position["offset"] == len(decoded)
        assert letter.raw == decoded[decoded.rindex(b"\n") + 1 :]


def test_an_s3_source_reads_a_damaged_member_again_with_a_ranged_get() -> None:
    bad, decoded = _corrupt(150_000)
    records, poison, client = _source_read(bad, "jsonl", Projection(["id"], key=["id"]))
    assert [n for n, _, _ in records] == _objects(decoded, "id")
    assert poison[-1].position["line"] == decoded.count(b"\n") + 1
    assert client.ranges == ["bytes=10-"]  # the member's deflate data, after its header


def test_a_truncated_gzip_csv_gives_every_row_ended_before_the_cut() -> None:
    rows = [b'%d,"a\nb",x\r\n' % i for i in range(1, 200)]
    data = b"id,note,x\r\n" + b"".join(rows)
    whole = gzip.compress(data)
    cut = whole[: len(whole) // 2]
    decoded = _decodable(cut)
    done = decoded.count(b"\r\n") - 1  # rows whose last line ended (the header's excluded)
    records, poison = _items(cut, "csv", gz=True)
    assert [v["id"] for _, v in records] == [str(i) for i in range(1, done + 1)]
    assert records[0][1]["note"] == "a\nb"
    [letter] = poison
    assert letter.position["line"] == done + 1 and letter.position["offset"] == len(decoded)
    assert letter.raw == decoded[decoded.rindex(b"\r\n") + 2 :]  # the unfinished row so far


def test_a_truncated_gzip_json_array_gives_every_element_parsed_before_the_cut() -> None:
    data = orjson.dumps([{"id": i, "pad": "x" * (i % 50)} for i in range(1, 300)])
    whole = gzip.compress(data)
    cut = whole[: len(whole) // 2]
    decoded = _decodable(cut)
    done = decoded.count(b"}")  # objects closed in the decoded bytes
    records, poison = _items(cut, "json", gz=True)
    assert [v["id"] for _, v in records] == list(range(1, done + 1))
    [letter] = poison
    assert letter.error_class == "EOFError"
    assert letter.position == {"key": "k", "etag": "e", "line": done + 1, "offset": len(decoded)}
