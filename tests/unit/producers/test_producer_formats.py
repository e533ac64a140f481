"""S3 object parsers: jsonl, csv and json, gzip, resume skips, poison."""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence

from producers.batch import Poison
from producers.s3_formats import Chunk, parse, read_lines
from schemas import Record


def _flat(chunk: Chunk) -> list[tuple[int, Record | Poison]]:
    """A chunk as (position, Record | Poison) pairs in position order."""
    raws: Sequence[bytes | None] = chunk.raws or [None] * len(chunk.values)
    items: list[tuple[int, Record | Poison]] = [
        (n, Record(v, position={"key": "k", "etag": "e", "line": n}, raw=r))
        for v, r, n in zip(chunk.values, raws, chunk.lines, strict=True)
    ]
    items += [(p.position["line"], p) for p in chunk.poison]
    return sorted(items, key=lambda item: item[0])


def _items(data: bytes, fmt: str, *, gz: bool = False, skip: int = 0, delimiter: str = ","):
    if gz:
        data = gzip.compress(data)
    out = []
    for chunk in parse(
        io.BytesIO(data), fmt, key="k", etag="e", gzipped=gz, skip=skip, delimiter=delimiter
    ):
        out.extend(_flat(chunk))
    return out


def test_read_lines_across_block_boundaries() -> None:
    data = b"".join(b"x" * (i % 7000) + b"\n" for i in range(600)) + b"tail"
    lines = list(read_lines(io.BytesIO(data)))
    assert len(lines) == 601
    assert lines[599] == b"x" * (599 % 7000)
    assert lines[-1] == b"tail"


def test_jsonl_records_blank_lines_crlf_and_poison_with_positions() -> None:
    data = b'{"a": 1}\r\n\n{"a": 2.50}\nnot json\n[1, 2]\n{"a": "\xc3\xa9"}'
    items = _items(data, "jsonl")
    assert [n for n, _ in items] == [1, 3, 4, 5, 6]
    recs = [i for _, i in items if isinstance(i, Record)]
    assert [r.value for r in recs] == [{"a": 1}, {"a": 2.5}, {"a": "é"}]
    assert recs[1].raw == b'{"a": 2.50}'  # the original bytes: exact numbers survive
    assert recs[0].position == {"key": "k", "etag": "e", "line": 1}
    bad = [i for _, i in items if isinstance(i, Poison)]
    assert [(p.position["line"], p.error_class) for p in bad] == [
        (4, "JSONDecodeError"),
        (5, "PoisonRecord"),
    ]
    assert bad[0].raw == b"not json"


def test_jsonl_gzip_and_skip() -> None:
    data = b"".join(b'{"n": %d}\n' % i for i in range(1, 5001))
    items = _items(data, "jsonl", gz=True, skip=4000)
    assert [n for n, _ in items] == list(range(4001, 5001))
    assert items[0][1].value == {"n": 4001}


def test_csv_quoted_newlines_delimiter_bom_and_wrong_field_count() -> None:
    data = (
        "\ufeffid;name;note\n"
        '1;"Smith; John";"line one\nline two"\n'
        "2;Zoë;\n"
        "\n"
        "3;too;many;fields\n"
        '4;"quote ""x""";end\n'
    ).encode()
    items = _items(data, "csv", delimiter=";")
    recs = {n: i.value for n, i in items if isinstance(i, Record)}
    assert recs[1] == {"id": "1", "name": "Smith; John", "note": "line one\nline two"}
    assert recs[2] == {"id": "2", "name": "Zoë", "note": ""}
    assert recs[4] == {"id": "4", "name": 'quote "x"', "note": "end"}
    bad = [i for _, i in items if isinstance(i, Poison)]
    assert len(bad) == 1
    assert bad[0].position["line"] == 3
    assert "4 fields, the header has 3" in bad[0].message


def test_csv_empty_object_and_header_only() -> None:
    assert _items(b"", "csv") == []
    assert _items(b"a,b\n", "csv") == []


def test_json_document_and_array() -> None:
    assert [i.value for _, i in _items(b'{"a": 1}', "json")] == [{"a": 1}]
    items = _items(b'[{"a": 1}, 5, {"a": 3}]', "json.gz".split(".")[0], gz=True)
    assert isinstance(items[1][1], Poison)
    assert [n for n, _ in items] == [1, 2, 3]
    assert isinstance(_items(b"{oops", "json")[0][1], Poison)


def test_unreadable_content_ends_the_object_with_one_poison_item() -> None:
    good = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(1, 4)))
    items = []
    for chunk in parse(io.BytesIO(good[:-12]), "jsonl", key="k", etag="e", gzipped=True):
        items.extend(_flat(chunk))
    assert isinstance(items[-1][1], Poison)
    assert items[-1][1].error_class == "EOFError"
    not_gzip = _items(b'{"n": 1}\n', "jsonl", gz=False)
    assert isinstance(not_gzip[0][1], Record)
    bad = []
    plain = b'{"n": 1}\n{"n": 2}\n'  # longer than a gzip header: every gzip reader says so
    for chunk in parse(io.BytesIO(plain), "jsonl", key="k", etag="e", gzipped=True):
        bad.extend(_flat(chunk))
    assert [(n, p.error_class if isinstance(p, Poison) else p) for n, p in bad] == [
        (1, "BadGzipFile")
    ]
    latin = _items("id,name\n1,Zo\xeb\n".encode("latin-1"), "csv")
    assert [p.error_class for _, p in latin] == ["UnicodeDecodeError"]


class _CountingStream(io.BytesIO):
    """Records how far the parser has read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.high = 0

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        self.high = self.tell()
        return out


def test_json_array_is_streamed_not_loaded_whole() -> None:
    data = b"[" + b",".join(b'{"n": %d, "pad": "%s"}' % (i, b"x" * 200) for i in range(30_000))
    data += b"]"  # ~6.5 MB
    stream = _CountingStream(data)
    chunks = parse(stream, "json", key="k", etag="e", gzipped=False)
    first = next(chunks)
    assert first.values[0] == {"n": 0, "pad": "x" * 200}
    assert stream.high < len(data) // 2  # the first records came before the end was read
    rest = [v["n"] for c in chunks for v in c.values]
    assert len(first.values) + len(rest) == 30_000 and rest[-1] == 29_999


def test_json_array_broken_part_way_keeps_the_good_elements() -> None:
    items = _items(b'  [{"a": 1}, {"a": 2.5}, {"a": ', "json")
    assert [i.value for _, i in items if isinstance(i, Record)] == [{"a": 1}, {"a": 2.5}]
    assert isinstance(items[-1][1], Poison) and items[-1][0] == 3
    assert _items(b"  \n ", "json") == []
    assert [i.value for _, i in _items(b'[{"a": 1}]', "json", skip=1)] == []


def test_jsonl_projection_reads_only_the_needed_fields_and_finds_the_same_poison() -> None:
    from producers.projection import Projection

    good = b"".join(
        b'{"id": %d, "at": "2024-01-01T00:00:00Z", "x": [1, {"y": 2}]}\n' % i
        for i in range(1, 4501)
    )
    data = (
        good
        + b'{"id": 9}\r\n\n{"id": 10, "at": 1, "x": "\xff"}\nnot json\n[1]\n{"id": 11, "at": 2}'
    )
    full = [c for c in parse(io.BytesIO(data), "jsonl", key="k", etag="e", gzipped=False)]
    proj = Projection(["id", "at", "id"])
    part = [
        c
        for c in parse(io.BytesIO(data), "jsonl", key="k", etag="e", gzipped=False, projection=proj)
    ]
    lines = [n for c in full for n in c.lines]
    assert [n for c in part for n in c.lines] == lines
    assert [r for c in part for r in (c.raws or [])] == [r for c in full for r in (c.raws or [])]
    assert [(p.position["line"], p.error_class) for c in part for p in c.poison] == [
        (4503, "JSONDecodeError"),  # invalid UTF-8 inside a field that is not read
        (4504, "JSONDecodeError"),
        (4505, "PoisonRecord"),
    ]
    values = [v for c in part for v in c.values]
    assert values[0] == {"id": 1, "at": "2024-01-01T00:00:00Z"}  # "x" never built
    assert values[-2:] == [{"id": 9}, {"id": 11, "at": 2}]  # a missing field: the encoder says
    assert [c.last for c in part] == [c.last for c in full]
    assert Projection([]).values([b'{"a": 1}', b"[]"]) is None
    assert Projection([]).values([b'{"a": 1}']) == [{}]


def test_gzip_corrupt_part_way_keeps_the_lines_before_it() -> None:
    import random

    rnd = random.Random(3)  # incompressible enough that the damage lands after many lines
    data = b"".join(b'{"n": %d, "r": %d}\n' % (i, rnd.randrange(10**9)) for i in range(1, 200_001))
    good = gzip.compress(data, 1)
    at = len(good) // 3
    bad = good[:at] + bytes(b ^ 0x5A for b in good[at : at + 64]) + good[at + 64 :]
    items = []
    for chunk in parse(io.BytesIO(bad), "jsonl", key="k", etag="e", gzipped=True):
        items.extend(_flat(chunk))
    *records, (n, poison) = items
    assert isinstance(poison, Poison) and "unreadable" in poison.message
    assert len(records) > 1000 and [i for i, _ in records] == list(range(1, len(records) + 1))
    assert n == len(records) + 1  # the position after the last good line
