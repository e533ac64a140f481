"""FerretDB (MongoDB wire protocol) through pymongo: what the MongoDB sink relies on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

N_DOCS = 500


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


def test_ping(collection: Collection):
    assert collection.database.client.admin.command("ping")["ok"] == 1.0


def test_unordered_bulk_upsert_is_idempotent(collection: Collection):
    first = collection.bulk_write(_upserts(version=1), ordered=False)
    assert first.upserted_count == N_DOCS
    assert collection.count_documents({}) == N_DOCS

    again = collection.bulk_write(_upserts(version=1), ordered=False)
    assert again.upserted_count == 0
    assert again.matched_count == N_DOCS
    assert collection.count_documents({}) == N_DOCS

    changed = collection.bulk_write(
        [
            UpdateOne({"_id": f"order-{i:04d}"}, {"$set": {"version": 2}, "$inc": {"edits": 1}})
            for i in range(0, N_DOCS, 10)
        ],
        ordered=False,
    )
    assert changed.matched_count == N_DOCS // 10
    assert changed.modified_count == N_DOCS // 10
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
