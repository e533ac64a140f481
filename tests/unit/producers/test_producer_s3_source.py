"""S3 source against a fake client: pagination, glob, order, resume, ETag changes, errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest

from producers.s3_source import S3AccessError, S3ObjectSource


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
        self.now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # the endpoint's clock
        self.times = dict.fromkeys(objects, self.now - timedelta(minutes=5))
        self.listed_after: list[str] = []

    @property
    def date(self) -> str:
        return format_datetime(self.now, usegmt=True)

    def put(self, key: str, body: bytes) -> None:
        """Write (or rewrite) an object now, then let a second pass on the clock."""
        self.objects[key] = body
        self.etags[key] = f"e{hash(body) & 0xFFFF}"
        self.times[key] = self.now
        self.now += timedelta(seconds=1)

    def get_paginator(self, _name):
        s3 = self

        class P:
            def paginate(self, Bucket, Prefix, StartAfter=""):
                if s3.missing:
                    raise FakeError("NoSuchBucket")
                s3.listed_after.append(StartAfter)
                keys = sorted(k for k in s3.objects if k.startswith(Prefix) and k > StartAfter)
                for i in range(0, len(keys), s3.page):
                    yield {
                        "Contents": [
                            {"Key": k, "ETag": f'"{s3.etags[k]}"', "LastModified": s3.times[k]}
                            for k in keys[i : i + s3.page]
                        ],
                        "ResponseMetadata": {"HTTPHeaders": {"date": s3.date}},
                    }

        return P()

    def get_object(self, Bucket, Key, IfMatch=None):
        return {"Body": io.BytesIO(self.objects[Key])}


def _lines(*ids: int) -> bytes:
    return b"".join(orjson.dumps({"id": i}) + b"\n" for i in ids)


def _source(client, **kw) -> S3ObjectSource:
    args: dict[str, Any] = {
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
        ids += [v["id"] for v in batch.rows().values]
        states.append(batch.state)
        units += batch.units
    return ids, states, units


def _pass(src: S3ObjectSource, state):
    """One pass of a fresh source restored from ``state``: (ids, last state)."""
    src.restore(state)
    ids, states, _ = _run(src)
    return ids, states[-1]


def test_every_object_in_key_order_across_pages_with_glob() -> None:
    objects = {f"in/{n:03d}.jsonl": _lines(n * 10, n * 10 + 1) for n in range(10)}
    objects["in/readme.txt"] = b"ignored"
    objects["out/000.jsonl"] = _lines(999)
    s3 = FakeS3(objects)
    src = _source(s3, glob="*.jsonl")
    ids, states, units = _run(src)
    assert ids == [i for n in range(10) for i in (n * 10, n * 10 + 1)]
    assert units == 10
    last = states[-1]
    assert last["current"] is None
    assert last["finished"] == 10
    # the sweep is complete: the next one starts from the first key, relative to this one
    assert last["after"] == "in/009.jsonl" and last["start"] is None
    assert last["prev"] == (s3.now.replace(microsecond=0) + timedelta(seconds=1)).isoformat()
    # mid-sweep: the high-water key, and the object the batch ended in
    assert states[0]["after"] == "in/000.jsonl"
    assert states[0]["current"] == {
        "key": "in/001.jsonl",
        "etag": s3.etags["in/001.jsonl"],
        "line": 2,
    }


def test_resume_inside_an_object_and_skip_done_ones() -> None:
    objects = {"in/a.jsonl": _lines(1, 2), "in/b.jsonl": _lines(3, 4, 5, 6, 7)}
    s3 = FakeS3(objects)
    current = {"key": "in/b.jsonl", "etag": s3.etags["in/b.jsonl"], "line": 3}
    state: dict[str, Any] = {
        "after": "in/a.jsonl",
        "start": s3.now.isoformat(),
        "prev": None,
        "recent": [],
        "prev_recent": [],
        "current": current,
        "finished": 1,
    }
    assert _pass(_source(s3), state)[0] == [6, 7]
    assert s3.listed_after == ["in/a.jsonl"]  # a resumed sweep lists after its high-water key


def test_an_old_checkpoint_with_one_etag_per_object_is_still_read() -> None:
    objects = {"in/a.jsonl": _lines(1, 2), "in/b.jsonl": _lines(3, 4, 5, 6, 7)}
    s3 = FakeS3(objects)
    old = {
        "done": {"in/a.jsonl": s3.etags["in/a.jsonl"]},
        "current": {"key": "in/b.jsonl", "etag": s3.etags["in/b.jsonl"], "line": 3},
    }
    ids, state = _pass(_source(s3), old)
    assert ids == [6, 7]
    assert "legacy" not in state and "done" not in state  # migrated after one sweep
    assert state["finished"] == 2
    assert _pass(_source(s3), state)[0] == []
    stale = {"done": {"in/a.jsonl": "old-etag", "in/b.jsonl": s3.etags["in/b.jsonl"]}}
    assert _pass(_source(s3), stale)[0] == [1, 2]  # its ETag changed since: read again


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


def test_rewritten_and_new_objects_are_read_in_the_next_sweep() -> None:
    s3 = FakeS3({f"in/{n}.jsonl": _lines(n) for n in range(1, 5)})
    ids, state = _pass(_source(s3), None)
    assert ids == [1, 2, 3, 4]
    assert _pass(_source(s3), state)[0] == []  # nothing new
    s3.put("in/2.jsonl", _lines(20))  # rewritten: a new ETag
    s3.put("in/0.jsonl", _lines(0))  # a new key sorting before every key already read
    ids, state = _pass(_source(s3), state)
    assert ids == [0, 20]
    assert _pass(_source(s3), state)[0] == []
    s3.put("in/3.jsonl", _lines(30))
    off = _source(s3, reingest_on_change=False)
    assert _pass(off, state)[0] == []  # reingest_on_change: false ignores a rewrite


def test_an_object_written_in_the_second_a_sweep_starts_is_read_exactly_once() -> None:
    s3 = FakeS3({"in/a.jsonl": _lines(1)})
    s3.times["in/a.jsonl"] = s3.now  # S3 times are whole seconds: as new as the listing
    ids, state = _pass(_source(s3), None)
    assert ids == [1]
    assert len(state["prev_recent"]) == 1  # only such objects keep an ETag digest
    s3.now += timedelta(seconds=30)
    assert _pass(_source(s3), state)[0] == []


def test_an_object_written_after_the_sweep_began_is_left_to_the_next_sweep() -> None:
    s3 = FakeS3({"in/a.jsonl": _lines(1), "in/b.jsonl": _lines(2)})
    s3.times["in/b.jsonl"] = s3.now + timedelta(seconds=5)  # appeared while listing
    ids, state = _pass(_source(s3), None)
    assert ids == [1]
    s3.now += timedelta(seconds=10)
    assert _pass(_source(s3), state)[0] == [2]


def test_reingest_off_moves_forward_in_key_order() -> None:
    s3 = FakeS3({"in/b.jsonl": _lines(2)})
    off = _source(s3, reingest_on_change=False)
    ids, state = _pass(off, None)
    assert ids == [2]
    s3.put("in/a.jsonl", _lines(1))  # sorts before the last key read: not read
    s3.put("in/c.jsonl", _lines(3))
    ids, state = _pass(_source(s3, reingest_on_change=False), state)
    assert ids == [3]
    assert state["after"] == "in/c.jsonl"


def test_checkpoint_size_does_not_grow_with_the_number_of_objects() -> None:
    from headrace.checkpoints import encode_checkpoint

    objects = {f"in/{n:06d}.jsonl": _lines(n) for n in range(20_000)}
    s3 = FakeS3(objects, page=1000)
    src = _source(s3, batch_records=5000, concurrency=8)
    ids, states, _ = _run(src)
    assert len(ids) == 20_000
    sizes = [len(encode_checkpoint("s", st)) for st in states]
    assert max(sizes) < 1000  # was one ETag per object: ~800 KB here, past 1 MB at ~13,000
    s3.put("in/000007.jsonl", _lines(7000))
    s3.now += timedelta(seconds=1)
    ids, state = _pass(_source(s3, batch_records=5000), states[-1])
    assert ids == [7000]
    assert len(encode_checkpoint("s", state)) < 1000


def test_missing_bucket_names_bucket_and_endpoint() -> None:
    src = _source(FakeS3({}, missing=True), endpoint="http://127.0.0.1:5000")
    with pytest.raises(S3AccessError) as err:
        _run(src)
    msg = str(err.value)
    assert "bucket 'b'" in msg and "http://127.0.0.1:5000" in msg and "NoSuchBucket" in msg


def test_readers_encode_records_and_move_unencodable_ones_to_poison() -> None:
    from producers.encoder import RecordEncoder
    from producers.projection import Projection
    from schemas import JsonCodec

    body = (
        b'{"id": 1, "at": "2024-05-01T00:00:01Z"}\n'
        b'{"at": "2024-05-01T00:00:02Z"}\n'  # no key field
        b'{"id": 3, "at": "not a time"}\n'
        b'{"id": 4, "at": "2024-05-01T00:00:04.5+00:00"}\n'
    )
    encoder = RecordEncoder(JsonCodec(), ["id"], "at")
    s3 = FakeS3({"in/a.jsonl": body})
    src = _source(
        s3,
        batch_records=100,
        encoder=encoder,
        projection=Projection(["id", "at"]),
    )
    src.restore(None)
    [batch] = list(src.batches())
    rows = batch.rows()
    assert rows.encoded is not None
    assert [v["id"] for v in rows.values] == [1, 4]
    assert rows.encoded.keys == [b"1", b"4"]
    assert rows.encoded.times == [1714521601000, 1714521604500]
    assert rows.encoded.datas == body.splitlines()[0::3]  # the lines as read
    assert [p["line"] for p in map(rows.position, range(2)) if p is not None] == [1, 4]
    # the same parts the runner's encoder makes of the same values
    again = encoder.encode_many(rows.values, rows.raws)
    assert (again.keys, again.datas, again.times) == (
        rows.encoded.keys,
        rows.encoded.datas,
        rows.encoded.times,
    )
    poison = {p.position["line"]: p for p in batch.poison}
    assert sorted(poison) == [2, 3]
    assert poison[2].error_class == "PoisonRecord" and "'id'" in poison[2].message
    assert poison[2].key is None and poison[2].raw == body.splitlines()[1]
    assert poison[3].key == b"3" and "timestamp field 'at'" in poison[3].message
    assert poison[3].position == {"key": "in/a.jsonl", "etag": s3.etags["in/a.jsonl"], "line": 3}
