"""S3 source against a fake client: pagination, glob, order, resume, ETag changes, errors."""

from __future__ import annotations

import io

import orjson
import pytest

from producers.s3_source import S3AccessError, S3ObjectSource
from schemas import Record


class FakeError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeS3:
    def __init__(self, objects: dict[str, bytes], page: int = 3, missing: bool = False) -> None:
        self.objects = objects
        self.etags = {k: f"e{hash(v) & 0xFFFF}" for k, v in objects.items()}
        self.page = page
        self.missing = missing

    def get_paginator(self, _name):
        s3 = self

        class P:
            def paginate(self, Bucket, Prefix):
                if s3.missing:
                    raise FakeError("NoSuchBucket")
                keys = sorted(k for k in s3.objects if k.startswith(Prefix))
                for i in range(0, len(keys), s3.page):
                    yield {
                        "Contents": [
                            {"Key": k, "ETag": f'"{s3.etags[k]}"'} for k in keys[i : i + s3.page]
                        ]
                    }

        return P()

    def get_object(self, Bucket, Key, IfMatch=None):
        return {"Body": io.BytesIO(self.objects[Key])}


def _lines(*ids: int) -> bytes:
    return b"".join(orjson.dumps({"id": i}) + b"\n" for i in ids)


def _source(client, **kw) -> S3ObjectSource:
    args = {
        "bucket": "b",
        "prefix": "in/",
        "file_format": "jsonl",
        "concurrency": 3,
        "batch_records": 4,
    }
    args.update(kw)
    return S3ObjectSource("s", client, **args)


def _run(src: S3ObjectSource):
    ids, states, units = [], [], 0
    for batch in src.batches():
        ids += [r.value["id"] for r in batch.records if isinstance(r, Record)]
        states.append(batch.state)
        units += batch.units
    return ids, states, units


def test_every_object_in_key_order_across_pages_with_glob() -> None:
    objects = {f"in/{n:03d}.jsonl": _lines(n * 10, n * 10 + 1) for n in range(10)}
    objects["in/readme.txt"] = b"ignored"
    objects["out/000.jsonl"] = _lines(999)
    src = _source(FakeS3(objects), glob="*.jsonl")
    ids, states, units = _run(src)
    assert ids == [i for n in range(10) for i in (n * 10, n * 10 + 1)]
    assert units == 10
    assert states[-1]["current"] is None
    assert sorted(states[-1]["done"]) == sorted(k for k in objects if k.startswith("in/0"))


def test_resume_inside_an_object_and_skip_done_ones() -> None:
    objects = {"in/a.jsonl": _lines(1, 2), "in/b.jsonl": _lines(3, 4, 5, 6, 7)}
    s3 = FakeS3(objects)
    src = _source(s3)
    src.restore(
        {
            "done": {"in/a.jsonl": s3.etags["in/a.jsonl"]},
            "current": {"key": "in/b.jsonl", "etag": s3.etags["in/b.jsonl"], "line": 3},
        }
    )
    assert _run(src)[0] == [6, 7]


def test_mid_object_state_points_at_the_last_line_of_the_batch() -> None:
    s3 = FakeS3({"in/a.jsonl": _lines(*range(4500))})  # parsed in chunks of 2000 lines
    ids, states, _ = _run(_source(s3))
    assert ids == list(range(4500))
    assert states[0]["current"] == {
        "key": "in/a.jsonl",
        "etag": s3.etags["in/a.jsonl"],
        "line": 2000,
    }
    assert states[-1]["current"] is None


def test_changed_etag_is_reingested_only_when_configured() -> None:
    s3 = FakeS3({"in/a.jsonl": _lines(1)})
    state = {"done": {"in/a.jsonl": "old-etag"}, "current": None}
    src = _source(s3)
    src.restore(state)
    assert _run(src)[0] == [1]
    src = _source(s3, reingest_on_change=False)
    src.restore(state)
    assert _run(src)[0] == []
    again = _source(s3)
    again.restore({"done": {"in/a.jsonl": s3.etags["in/a.jsonl"]}, "current": None})
    assert _run(again)[0] == []


def test_missing_bucket_names_bucket_and_endpoint() -> None:
    src = _source(FakeS3({}, missing=True), endpoint="http://127.0.0.1:5000")
    with pytest.raises(S3AccessError) as err:
        _run(src)
    msg = str(err.value)
    assert "bucket 'b'" in msg and "http://127.0.0.1:5000" in msg and "NoSuchBucket" in msg
