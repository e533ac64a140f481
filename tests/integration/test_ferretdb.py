"""FerretDB (MongoDB wire protocol) through pymongo: what the MongoDB sink relies on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from connectors.mongodb_writer import MAX_OPS
from headrace_dev.stack.ferretdb import FERRETDB_BUILD

N_DOCS = 500
# Upstream FerretDB 1.24.2 (SQLite backend) never answers an `update` command of 100 or more
# statements that hit existing documents (each statement kept a pooled connection until the
# command ended); our build is patched (headrace_dev/stack/ferretdb_patches.py), so one request
# carries as many operations as the MongoDB sink sends (connectors.mongodb.MAX_OPS).
CHUNK = MAX_OPS


@pytest.fixture
def collection(mongo_uri: str, unique: str) -> Iterator[Collection[dict[str, Any]]]:
    """A fresh collection ``<unique>`` in database ``<unique>``; the database is dropped after."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=60000
    )
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        pytest.fail(
            f"FerretDB at {mongo_uri} did not answer ping ({exc}); run `headrace stack up`",
            pytrace=False,
        )
    try:
        yield client[unique][unique]
    finally:
        client.drop_database(unique)
        client.close()


def _upserts(version: int) -> list[UpdateOne]:
    return [
        UpdateOne(
            {"_id": f"order-{i:04d}"},
            {
                "$set": {
                    "customer": f"c{i % 7}",
                    # Money as an exact decimal string: FerretDB 1.24 has no Decimal128.
                    "total": f"{i}.10",
                    "version": version,
                }
            },
            upsert=True,
        )
        for i in range(N_DOCS)
    ]


def _bulk(collection: Collection[dict[str, Any]], ops: list[UpdateOne]) -> tuple[int, int, int]:
    """Unordered ``bulk_write`` in chunks; returns (upserted, matched, modified) over all chunks."""
    upserted = matched = modified = 0
    for start in range(0, len(ops), CHUNK):
        result = collection.bulk_write(ops[start : start + CHUNK], ordered=False)
        upserted += result.upserted_count
        matched += result.matched_count
        modified += result.modified_count
    return upserted, matched, modified


def test_ping(collection: Collection[dict[str, Any]]):
    assert collection.database.client.admin.command("ping")["ok"] == 1.0


def test_the_stack_runs_our_patched_build(collection: Collection[dict[str, Any]]):
    info = collection.database.client.admin.command("buildInfo")
    assert info.get("ferretdbVersion") == FERRETDB_BUILD, (
        f"FerretDB reports {info.get('ferretdbVersion')!r}, not our patched build "
        f"{FERRETDB_BUILD!r}: it was started before the patches; restart it with "
        "`headrace stack down ferretdb && headrace stack up ferretdb`"
    )


def test_id_lookups_use_the_id_index(collection: Collection[dict[str, Any]]):
    """The patched SQLite backend finds documents by ``_id`` through the index, also when
    the filter has more conditions or is an ``$in`` list (upstream scanned the table)."""
    collection.insert_many([{"_id": f"o{i}", "v": i} for i in range(50)])
    for filt in ({"_id": "o7"}, {"_id": "o7", "v": {"$lte": 9}}, {"_id": {"$in": ["o7", "o9"]}}):
        plan = str(collection.find(filt).explain()["queryPlanner"])
        assert "USING INDEX" in plan, (filt, plan)
    assert [d["v"] for d in collection.find({"_id": "o7", "v": {"$lte": 6}})] == []
    assert sorted(d["v"] for d in collection.find({"_id": {"$in": ["o7", "o9", "x"]}})) == [7, 9]


def test_unordered_bulk_upsert_is_idempotent(collection: Collection[dict[str, Any]]):
    assert _bulk(collection, _upserts(version=1)) == (N_DOCS, 0, 0)
    assert collection.count_documents({}) == N_DOCS

    # The same batch again (a replay after a crash): nothing new, nothing changed.
    assert _bulk(collection, _upserts(version=1)) == (0, N_DOCS, 0)
    assert collection.count_documents({}) == N_DOCS

    edits = [
        UpdateOne({"_id": f"order-{i:04d}"}, {"$set": {"version": 2}, "$inc": {"edits": 1}})
        for i in range(0, N_DOCS, 10)
    ]
    assert _bulk(collection, edits) == (0, N_DOCS // 10, N_DOCS // 10)
    assert collection.count_documents({"version": 2}) == N_DOCS // 10
    assert collection.count_documents({"version": 1}) == N_DOCS - N_DOCS // 10

    doc = collection.find_one({"_id": "order-0120"})
    assert doc == {
        "_id": "order-0120",
        "customer": "c1",
        "total": "120.10",
        "version": 2,
        "edits": 1,
    }
    assert Decimal(doc["total"]) == Decimal("120.10")
    untouched = collection.find_one({"_id": "order-0121"})
    assert untouched is not None and untouched["version"] == 1 and "edits" not in untouched


def test_unique_index_rejects_a_duplicate(collection: Collection[dict[str, Any]]):
    name = collection.create_index("order_no", unique=True)
    assert collection.index_information()[name].get("unique") is True
    collection.insert_many([{"order_no": n} for n in range(10)], ordered=False)
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"order_no": 3})
    assert collection.count_documents({}) == 10
    assert collection.count_documents({"order_no": 3}) == 1
