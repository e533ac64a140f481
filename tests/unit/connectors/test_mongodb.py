"""MongoDB writer against a fake collection: ids, write modes, version guard, DLQ reasons."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fakes import rec
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne
from pymongo.errors import AutoReconnect, BulkWriteError

from connectors.mongodb import MongoSink
from connectors.mongodb_writer import MAX_OPS, MongoWriter
from connectors.records import WriteOutcome
from headrace.errors import RetriableError


def _key(v: Any) -> Any:
    return tuple(sorted(v.items())) if isinstance(v, dict) else v


class FakeCollection:
    """Applies pymongo operations to a dict; E11000 on duplicate _id like MongoDB."""

    def __init__(self, down: int = 0) -> None:
        self.docs: dict[Any, dict[str, Any]] = {}
        self.requests: list[int] = []
        self.down = down

    def create_index(self, keys: Any, **kw: Any) -> str:
        return "i"

    def find(self, flt: dict[str, Any], projection: Any = None) -> list[dict[str, Any]]:
        ids = [_key(i) for i in flt["_id"]["$in"]]
        return [d for k, d in self.docs.items() if k in ids]

    def _matches(self, flt: dict[str, Any]) -> bool:
        doc = self.docs.get(_key(flt["_id"]))
        if doc is None:
            return False
        for f, cond in flt.items():
            if f != "_id" and not (f in doc and doc[f] <= cond["$lte"]):
                return False
        return True

    def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        if self.down:
            self.down -= 1
            raise AutoReconnect("connection refused")
        self.requests.append(len(requests))
        errors: list[dict[str, Any]] = []
        res = {"nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nRemoved": 0}
        for i, op in enumerate(requests):
            if isinstance(op, InsertOne):
                if _key(op._doc["_id"]) in self.docs:
                    errors.append({"index": i, "code": 11000, "errmsg": "dup"})
                else:
                    self.docs[_key(op._doc["_id"])] = dict(op._doc)
                    res["nInserted"] += 1
            elif isinstance(op, DeleteOne):
                res["nRemoved"] += int(self.docs.pop(_key(op._filter["_id"]), None) is not None)
            elif isinstance(op, DeleteMany):
                for doc_id in op._filter["_id"]["$in"]:
                    res["nRemoved"] += int(self.docs.pop(_key(doc_id), None) is not None)
            else:
                new = op._doc if isinstance(op, ReplaceOne) else op._doc["$set"]
                k = _key(op._filter["_id"])
                if self._matches(op._filter):
                    self.docs[k] = (
                        dict(new) if isinstance(op, ReplaceOne) else {**self.docs[k], **new}
                    )
                    res["nMatched"] += 1
                elif k in self.docs:
                    errors.append({"index": i, "code": 11000, "errmsg": "dup"})
                else:
                    self.docs[k] = dict(new)
                    res["nUpserted"] += 1
        if errors:
            raise BulkWriteError({**res, "writeErrors": errors, "writeConcernErrors": []})

        class R:
            bulk_api_result = res

        return R()


def _writer(coll: FakeCollection, **cfg: Any) -> MongoWriter:
    config = MongoSink.model_validate(
        {
            "type": "mongodb",
            "from": "t",
            "uri": "mongodb://x",
            "database": "d",
            "collection": "c",
            **cfg,
        }
    )
    w = MongoWriter("m", config, coll)
    w.open()
    return w


def test_id_from_key_from_field_and_compound() -> None:
    coll = FakeCollection()
    _writer(coll).write([rec("k1", {"a": 1})])
    _writer(coll, id=["a"]).write([rec("zz", {"a": 7})])
    _writer(coll, id=["a", "b"]).write([rec("zz", {"a": 1, "b": "x"})])
    assert set(coll.docs) == {"k1", 7, (("a", 1), ("b", "x"))}


def test_version_guard_decisions() -> None:
    coll = FakeCollection()
    w = _writer(coll, id=["id"], version_field="v", write="replace")
    w.write([rec("a", {"id": "a", "v": 5, "x": "new"})])
    out = w.write([rec("a", {"id": "a", "v": 3, "x": "old"}, 1)])
    assert out.counts["skipped_older"] == 1 and coll.docs["a"]["x"] == "new"
    out = w.write([rec("a", {"id": "a", "v": 6, "x": "newer"}, 2)])
    assert coll.docs["a"]["x"] == "newer" and out.counts["updated"] == 1
    out = w.write([rec("a", {"id": "a", "v": 6, "x": "newer"}, 2)])  # replay: same content
    assert coll.docs["a"] == {"_id": "a", "id": "a", "v": 6, "x": "newer"}


def test_collision_from_a_racing_writer_is_retried_then_older(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coll = FakeCollection()
    w = _writer(coll, id=["id"], version_field="v")
    # race: no pre-read
    monkeypatch.setattr(w, "_drop_older", lambda chunk, out: [(i, op) for i, op, _d, _r in chunk])
    coll.docs["a"] = {"_id": "a", "id": "a", "v": 9}
    out = w.write([rec("a", {"id": "a", "v": 3})])
    assert out.counts["skipped_older"] == 1 and coll.docs["a"]["v"] == 9
    assert coll.requests == [1, 1]  # tried once more before calling it older


def test_insert_duplicate_is_already_written() -> None:
    coll = FakeCollection()
    w = _writer(coll, id=["id"], write="insert")
    w.write([rec("a", {"id": "a"})])
    out = w.write([rec("a", {"id": "a"})])
    assert out.counts["skipped_existing"] == 1 and out.rejected == {}


def test_refused_documents_get_a_reason() -> None:
    coll = FakeCollection()
    out = _writer(coll, id=["id"]).write(
        [
            rec("a", {"id": "a", "x.y": 1}, 0),
            rec("b", {"id": "b", "$set": 1}, 1),
            rec("c", {"id": "c", "n": {"deep": float("nan")}}, 2),
            rec("d", {"x": 1}, 3),
            rec("e", {"id": "e"}, 4),
        ]
    )
    assert "'x.y'" in out.rejected[0] and "'$set'" in out.rejected[1]
    assert "'n.deep'" in out.rejected[2] and "'id' is missing" in out.rejected[3]
    assert list(coll.docs) == ["e"]


def test_tombstones_delete_only_in_delete_mode() -> None:
    coll = FakeCollection()
    _writer(coll, id=["id"]).write([rec("7", {"id": 7}), rec("8", {"id": 8}, 1)])
    out = _writer(coll, id=["id"]).write([rec("7", None, 2)])
    assert out.counts["skipped_tombstone"] == 1 and len(coll.docs) == 2
    _writer(coll, id=["id"], write="delete-on-tombstone").write([rec("7", None, 3)])
    assert list(coll.docs) == [8]


def test_requests_are_chunked_and_newest_per_id_wins() -> None:
    coll = FakeCollection()
    keys = 2 * MAX_OPS + 20
    batch = [rec(f"k{i % keys}", {"n": i}, i) for i in range(2 * keys)]
    out = _writer(coll).write(batch)
    assert sorted(coll.requests) == [20, MAX_OPS, MAX_OPS]  # sent concurrently
    assert out.counts["superseded"] == keys and coll.docs["k5"]["n"] == keys + 5


class BlockingCollection(FakeCollection):
    """Every bulk_write waits until ``together`` are in flight (or times out): the writer
    must send a batch's requests concurrently to get through."""

    def __init__(self, together: int, down: int = 0) -> None:
        super().__init__(down)
        self.barrier = threading.Barrier(together, timeout=5)
        self.lock = threading.Lock()

    def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        self.barrier.wait()
        with self.lock:
            return super().bulk_write(requests, ordered)


def test_requests_of_a_batch_are_written_concurrently() -> None:
    coll = BlockingCollection(together=3)
    batch = [rec(f"k{i}", {"n": i}, i) for i in range(3 * MAX_OPS)]
    out = _writer(coll, concurrency=3).write(batch)
    assert coll.requests == [MAX_OPS] * 3 and len(coll.docs) == 3 * MAX_OPS
    assert out.counts["inserted"] == 3 * MAX_OPS


def test_a_failed_request_fails_the_batch_after_the_others_finish() -> None:
    coll = BlockingCollection(together=2, down=1)
    batch = [rec(f"k{i}", {"n": i}, i) for i in range(2 * MAX_OPS)]
    with pytest.raises(RetriableError, match="unreachable"):
        _writer(coll, concurrency=2).write(batch)
    assert len(coll.docs) == MAX_OPS  # the other request was written; a retry rewrites it


def test_unreachable_server_is_retriable() -> None:
    with pytest.raises(RetriableError, match="unreachable"):
        _writer(FakeCollection(down=1)).write([rec("a", {"x": 1})])


def test_compound_id_tombstone_deletes_from_the_key() -> None:
    coll = FakeCollection()
    w = _writer(coll, id=["w", "c"], write="delete-on-tombstone")
    w.write([rec("x", {"w": 5, "c": "c1"}), rec("y", {"w": 5, "c": "c2"}, 1)])
    out = w.write([rec('[5,"c1"]', None, 2)])
    assert out.counts["deleted"] == 1 and list(coll.docs) == [(("c", "c2"), ("w", 5))]


def test_tombstone_of_a_one_field_id_finds_text_and_number_ids() -> None:
    """The key's text is all the tombstone has: "00123" stays text, and "7" deletes the
    number 7 or the text "7", whichever the collection holds."""
    coll = FakeCollection()
    w = _writer(coll, id=["id"], write="delete-on-tombstone")
    w.write([rec("00123", {"id": "00123"}), rec("7", {"id": "7"}, 1), rec("8", {"id": 8}, 2)])
    assert set(coll.docs) == {"00123", "7", 8}
    w.write([rec("00123", None, 3), rec("7", None, 4), rec("8", None, 5)])
    assert coll.docs == {}


def test_tombstone_finds_named_ids_by_the_topics_key_fields() -> None:
    """Issue #15 defect 2: a rank's tombstone is keyed [window_start, customer_id]; a sink
    naming those fields in any order deletes the document the member's upsert wrote."""
    coll = FakeCollection()
    config = MongoSink.model_validate(
        {
            "type": "mongodb",
            "from": "top",
            "uri": "mongodb://x",
            "database": "d",
            "collection": "c",
            "id": ["customer_id", "window_start"],
            "write": "delete-on-tombstone",
        }
    )
    w = MongoWriter("m", config, coll, key_fields=("window_start", "customer_id"))
    w.write([rec("[0,7]", {"window_start": 0, "customer_id": 7, "rank": 1})])
    upserted = next(iter(coll.docs))
    w.write([rec("[0,7]", None, 1), rec("[0,8]", {"window_start": 0, "customer_id": 8}, 2)])
    assert upserted not in coll.docs
    assert list(coll.docs) == [(("customer_id", 8), ("window_start", 0))]
    (op,) = w.plan([rec("[0,7]", None, 3)], WriteOutcome())
    assert list(op[1]._filter["_id"]) == ["customer_id", "window_start"]  # the upsert's order


def test_tombstone_of_a_null_id_part_matches_the_upsert() -> None:
    coll = FakeCollection()
    w = _writer(coll, id=["w", "c"], write="delete-on-tombstone")
    w._key_fields = ["w", "c"]
    w.write([rec("[5,null]", {"w": 5, "c": None})])
    w.write([rec("[5,null]", None, 1)])
    assert coll.docs == {}
