"""ObjectRows: chunks of objects into one batch's columns, positions, the byte count."""

from __future__ import annotations

from producers.batch import ObjectRows, Poison
from producers.encoder import Encoded


def _encoded(n: int, first: int, nbytes: int | None) -> Encoded:
    return Encoded(
        [b"k%d" % i for i in range(first, first + n)],
        [b"v%d" % i for i in range(first, first + n)],
        list(range(first, first + n)),
        nbytes=nbytes,
    )


def test_the_first_chunk_is_taken_as_it_is_and_later_ones_appended() -> None:
    rows = ObjectRows()
    values: list[dict[str, object]] = [{}, {}]
    first = _encoded(2, 0, 4)
    rows.add("a", "e1", values, [b"v0", b"v1"], [1, 2], [], first)
    poison = Poison(b"x", "PoisonRecord", "bad", {"key": "b", "etag": "e2", "line": 2})
    rows.add("b", "e2", [{}], [b"v2"], [1], [poison], _encoded(1, 2, 2))
    got, dead = rows.take()
    assert got.values is values  # no copy of the first chunk's columns
    assert got.encoded is not None
    assert got.encoded.keys == [b"k0", b"k1", b"k2"]
    assert got.encoded.datas == [b"v0", b"v1", b"v2"]
    assert got.encoded.times == [0, 1, 2]
    assert got.encoded.nbytes == 6
    assert [got.position(i) for i in range(3)] == [
        {"key": "a", "etag": "e1", "line": 1},
        {"key": "a", "etag": "e1", "line": 2},
        {"key": "b", "etag": "e2", "line": 1},
    ]
    assert dead == [poison]
    assert len(rows) == 0  # empty again


def test_an_unknown_byte_count_or_a_plain_chunk_is_not_guessed() -> None:
    rows = ObjectRows()
    rows.add("a", "e", [{}], [b"v0"], [1], [], _encoded(1, 0, 2))
    rows.add("a", "e", [{}], [b"v1"], [2], [], _encoded(1, 1, None))
    got, _ = rows.take()
    assert got.encoded is not None and got.encoded.nbytes is None
    rows.add("a", "e", [{}], [b"v0"], [1], [], _encoded(1, 0, 2))
    rows.add("a", "e", [{"x": 1}], None, [2], [])  # not encoded: the runner encodes all
    got, _ = rows.take()
    assert got.encoded is None and got.raws == [b"v0", None]


def test_an_empty_chunk_before_the_first_records_does_not_decide_the_batch() -> None:
    rows = ObjectRows()
    rows.add("a", "e", [], [], [], [])  # e.g. a run of blank lines, not encoded
    rows.add("a", "e", [{}], [b"v0"], [3], [], _encoded(1, 0, 2))
    got, _ = rows.take()
    assert got.encoded is not None and got.encoded.datas == [b"v0"]
    assert got.position(0) == {"key": "a", "etag": "e", "line": 3}
