"""The native reader (``producers/native/``) gives exactly the Python encoder's key bytes and event
times, or declines; an S3 source reads the same records and poison with it as without it.

Skipped where the extension is not built (no cargo), except in CI (``CI`` set), where
``make setup`` builds it and a missing one is a failure."""

from __future__ import annotations

import io
import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from fixtures.native import REASON

from producers.encoder import RecordEncoder, event_time_ms
from producers.projection import NATIVE_READER, Projection
from schemas import JsonCodec

if not NATIVE_READER:  # the module's import of _headrace_native below needs it
    if os.environ.get("CI"):
        pytest.fail("the native reader is not built: run `make setup` with cargo installed")
    pytest.skip(REASON, allow_module_level=True)

import _headrace_native as native

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _python_ms(text: str) -> int | None:
    """What the Python encoder makes of an event time given as text (None: poison)."""
    try:
        return event_time_ms(text)
    except (ValueError, OverflowError):
        return None


def _random_time(rnd: random.Random) -> str:
    y = rnd.choice([1, 2, 1969, 1970, 2000, 2024, 2100, 9999, rnd.randrange(1, 10000)])
    mo, d = rnd.randrange(0, 14), rnd.randrange(0, 33)
    if rnd.random() < 0.7:  # mostly valid dates, so the times get exercised too
        mo, d = rnd.randrange(1, 13), rnd.randrange(1, 29)
    text = f"{y:04d}-{mo:02d}-{d:02d}"
    if rnd.random() < 0.9:
        text += rnd.choice("TTTT x")
        text += f"{rnd.randrange(0, 25):02d}:{rnd.randrange(0, 61):02d}"
        if rnd.random() < 0.8:
            text += f":{rnd.randrange(0, 61):02d}"
            if rnd.random() < 0.6:
                text += "." + "".join(rnd.choices("0123456789", k=rnd.randrange(0, 11)))
        text += rnd.choice(
            [
                "",
                "Z",
                "Z",
                f"+{rnd.randrange(0, 25):02d}:{rnd.randrange(0, 61):02d}",
                f"-{rnd.randrange(0, 25):02d}:{rnd.randrange(0, 61):02d}",
                "+0530",
                "+05",
                "z",
            ]
        )
    if rnd.random() < 0.05:  # damage it
        at = rnd.randrange(len(text))
        text = text[:at] + rnd.choice(["", "1", ":", " ", "-"]) + text[at + 1 :]
    return text


def test_iso_times_are_exactly_the_python_encoders_or_declined() -> None:
    rnd = random.Random(3)
    answered = 0
    for _ in range(50_000):
        text = _random_time(rnd)
        ours = native.iso_to_ms(text)
        if ours is not None:
            answered += 1
            assert ours == _python_ms(text), text
    assert answered > 20_000  # the common forms are read natively
    for text, ms in [
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.9999Z", -1),  # the floor, as Python's
        ("2024-05-01T00:00:04.5+00:00", 1714521604500),
        ("2024-05-01 02:00:00+02:00", 1714521600000),
        ("2024-05-01T00:00:00", 1714521600000),  # naive: UTC
        ("2024-05-01", 1714521600000),
        ("2024-02-29T12:00Z", 1709208000000),
        ("2024-05-01T00:00:00.123456789Z", 1714521600123),
    ]:
        assert native.iso_to_ms(text) == ms == _python_ms(text), text
    for text in ["2023-02-29", "2024-05-01T24:00:00Z", "2024-05-01Z", "2024-05-01T10", ""]:
        assert native.iso_to_ms(text) is None, text


def _python_parts(lines: list[bytes], key: str | None, time: str | None) -> tuple[Any, Any]:
    fields = [f for f in (key, time) if f]
    values = Projection(fields).values(lines)
    assert values is not None
    enc = RecordEncoder(JsonCodec(), [key] if key else None, time).encode_many(values, lines)
    assert not enc.poison
    return enc.keys, enc.times


@pytest.mark.parametrize(("key", "time"), [("id", "at"), ("id", None), (None, "at")])
def test_encode_lines_gives_the_python_encoders_parts(key: str | None, time: str | None) -> None:
    lines = [
        b'{"id": "o1", "at": "2024-05-01T00:00:01Z", "x": [1, {"y": null}]}',
        b'{"at": 1714521600123, "id": 42}',  # an integer key and time
        b'{"id": -7, "at": "2024-05-01T00:00:01.5+02:00"}',
        b'{"id": "caf\\u00e9 \\"q\\"", "at": "2024-05-01"}',  # escapes in the key
        '{"id": "日本", "at": "1969-12-31T23:59:59.999Z", "n": "ü"}'.encode(),
        b'{"id": "a", "id": "b", "at": 0, "at": "2024-05-01T00:00:00Z"}',  # last one wins
        b'  {"id": 123456789012345678901234567890, "at": -1}  ',
        b'{"x": {"id": "not this one"}, "id": "this", "at": "2024-05-01T00:00:00"}',
    ]
    got = native.encode_lines(lines, key, time)
    assert got is not None
    assert got[:2] == _python_parts(lines, key, time)
    assert got[2] == sum(map(len, lines))  # the byte counter's figure


@pytest.mark.parametrize(
    "line",
    [
        b'{"id": 1, "at": 1',  # not valid JSON
        b"[1, 2]",  # not an object
        b"",  # blank
        b'{"at": 1}',  # no key field
        b'{"id": 1}',  # no time field
        b'{"id": 1.5, "at": 1}',  # a float key: encode_key
        b'{"id": true, "at": 1}',
        b'{"id": null, "at": 1}',
        b'{"id": -0, "at": 1}',  # Python's key is "0"
        b'{"id": 1, "at": 1.5}',
        b'{"id": 1, "at": null}',
        b'{"id": 1, "at": "2024-05-01T00:00:00\\u005a"}',  # an escape in the time
        b'{"id": 1, "at": "not a time"}',
        b'{"id": 1, "at": 1, "x": "\xff"}',  # not UTF-8, in a field not read
        b'{"id": 1, "at": 1} {}',  # trailing content
    ],
)
def test_encode_lines_declines_what_the_python_path_must_decide(line: bytes) -> None:
    good = b'{"id": 1, "at": 1}'
    assert native.encode_lines([good], "id", "at") == ([b"1"], [1], len(good))
    assert native.encode_lines([good, line, good], "id", "at") is None


def test_encode_lines_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        native.encode_lines(["text"], "id", None)  # type: ignore[list-item]


def test_projection_is_native_only_for_what_the_native_reader_encodes() -> None:
    assert Projection(["id", "at"], key=["id"], time="at").native
    assert Projection(["at"], time="at").native
    assert not Projection(["a", "b"], key=["a", "b"]).native  # a composite key
    assert not Projection(["id", "at"]).native  # no key or time given: values only
    assert not Projection(["id", "at"], key=["id"], time="at", native=False).native


def _read(body: bytes, projection: Projection, batch: int = 700) -> tuple[list[Any], list[Any]]:
    """(records as (line, key, value, time), poison as (line, class, key, raw)) of an S3
    source reading ``body`` with ``projection``."""
    from producers.s3_source import S3ObjectSource

    class S3:
        def get_paginator(self, _name: str) -> Any:
            class P:
                def paginate(self, **_kw: Any) -> Any:
                    yield {"Contents": [{"Key": "in/a.jsonl", "ETag": '"e1"'}]}

            return P()

        def get_object(self, **_kw: Any) -> Any:
            return {"Body": io.BytesIO(body)}

    encoder = RecordEncoder(JsonCodec(), ["id"], "at")
    src = S3ObjectSource(
        "s",
        S3(),
        bucket="b",
        prefix="in/",
        file_format="jsonl",
        batch_records=batch,
        encoder=encoder,
        projection=projection,
    )
    src.restore(None)
    records, poison = [], []
    for b in src.batches():
        rows = b.rows()
        enc = rows.encoded or encoder.encode_many(rows.values, rows.raws)
        assert enc.keys is not None and enc.times is not None and not enc.poison
        for i in range(len(rows)):
            line = rows.position(i)["line"]  # type: ignore[index]
            records.append((line, enc.keys[i], enc.datas[i], enc.times[i]))
        poison += [(p.position["line"], p.error_class, p.key, p.raw) for p in b.poison]
    src.close()
    return records, poison


def test_an_s3_source_reads_the_same_records_and_poison_natively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producers import s3_formats

    def good(first: int, count: int) -> bytes:
        return b"".join(
            b'{"id": "k%d", "at": "2024-05-01T00:%02d:%02dZ", "x": [1]}\n'
            % (i, i // 60 % 60, i % 60)
            for i in range(first, first + count)
        )

    messy = b'{"id": 9}\r\n\n{"id": 10, "at": 1, "x": "\xff"}\nnot json\n[1]\n{"id": 11, "at": 2}\n'
    n = s3_formats.NATIVE_CHUNK
    # a clean chunk (read natively), one with poison (the Python path), one ending in poison
    body = good(1, n) + good(n + 1, 500) + messy + good(n + 507, n) + b'{"id": 12, "at": "x"}\n'
    fields = ["id", "at"]
    native_proj = Projection(fields, key=["id"], time="at")
    assert native_proj.native
    answered: list[int] = []
    encode = Projection.encode

    def spy(self: Projection, lines: list[bytes]) -> Any:
        got = encode(self, lines)
        answered.append(len(lines) if got is not None else 0)
        return got

    monkeypatch.setattr(Projection, "encode", spy)
    ours = _read(body, native_proj)
    assert answered == [n, 0, 0]  # the clean chunk natively, the others declined
    assert ours == _read(body, Projection(fields, key=["id"], time="at", native=False))
    records, poison = ours
    assert len(records) == 2 * n + 501
    assert records[0] == (1, b"k1", good(1, 1).rstrip(), 1714521601000)
    assert records[n + 500] == (n + 506, b"11", b'{"id": 11, "at": 2}', 2)
    assert sorted((line, cls, key) for line, cls, key, _ in poison) == [
        (n + 501, "PoisonRecord", b"9"),  # no time field
        (n + 503, "JSONDecodeError", None),
        (n + 504, "JSONDecodeError", None),
        (n + 505, "PoisonRecord", None),
        (2 * n + 507, "PoisonRecord", b"12"),
    ]


def test_a_native_projection_needs_the_encoder() -> None:
    from producers.s3_source import S3ObjectSource

    with pytest.raises(ValueError, match="encoder"):
        S3ObjectSource(
            "s",
            object(),
            bucket="b",
            prefix="",
            file_format="jsonl",
            projection=Projection(["id"], key=["id"]),
        )
