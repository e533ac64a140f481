"""FerretDB (MongoDB wire protocol) through pymongo: what the MongoDB sink relies on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

N_DOCS = 500
# FerretDB 1.24.2 (SQLite backend) never answers an `update` command of 100 or more statements
# that hit existing documents, and the database stays wedged until a restart (99 work; checked
# on a private instance). MongoDB has no such limit. So the bulk below goes in chunks.
CHUNK = 50


@pytest.fixture
def collection(mongo_uri: str, unique: str) -> Iterator[Collection]:
    """A fresh collection ``<unique>`` in database ``<unique>``; the database is dropped after."""
    client: MongoClient = MongoClient(
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


def _bulk(collection: Collection, ops: list[UpdateOne]) -> tuple[int, int, int]:
    """Unordered ``bulk_write`` in chunks; returns (upserted, matched, modified) over all chunks."""
    upserted = matched = modified = 0
    for start in range(0, len(ops), CHUNK):
        result = collection.bulk_write(ops[start : start + CHUNK], ordered=False)
        upserted += result.upserted_count
        matched += result.matched_count
        modified += result.modified_count
    return upserted, matched, modified


def test_ping(collection: Collection):
    assert collection.database.client.admin.command("ping")["ok"] == 1.0


def test_unordered_bulk_upsert_is_idempotent(collection: Collection):
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


def test_unique_index_rejects_a_duplicate(collection: Collection):
    name = collection.create_index("order_no", unique=True)
    assert collection.index_information()[name].get("unique") is True
    collection.insert_many([{"order_no": n} for n in range(10)], ordered=False)
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"order_no": 3})
    assert collection.count_documents({}) == 10
    assert collection.count_documents({"order_no": 3}) == 1
