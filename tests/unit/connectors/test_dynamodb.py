"""DynamoDB writer against a fake client: 25-item chunks, UnprocessedItems, throttling,
conditional puts, Decimal conversion and dead-letter reasons."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fakes import rec

from connectors.adaptive import AdaptiveRate
from connectors.backoff import Backoff
from connectors.dynamodb import DynamoDBSink
from connectors.dynamodb_writer import DynamoWriter
from connectors.records import FatalSinkError
from headrace.errors import RetriableError


def _err(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")


class FakeDynamo:
    """Stores items by key; ``unprocessed`` answers leave that many items for the next call,
    ``unread`` answers of BatchGetItem that many keys. ``after_read`` items are stored right
    after the next BatchGetItem answered (a writer racing in between)."""

    def __init__(
        self,
        unprocessed: list[int] | None = None,
        throttle: int = 0,
        table: bool = True,
        unread: list[int] | None = None,
    ):
        # by id; TwoKeyDynamo's by (window_start, customer_id)
        self.items: dict[str | tuple[Decimal, str], dict[str, Any]] = {}
        self.batches: list[int] = []
        self.unprocessed = list(unprocessed or [])
        self.throttle = throttle
        self.table = table
        self.created: dict[str, Any] | None = None
        self.unread = list(unread or [])
        self.gets: list[int] = []  # keys asked per BatchGetItem
        self.puts: list[tuple[str, bool]] = []  # (id, conditional) per PutItem
        self.after_read: dict[str, dict[str, Any]] = {}

    def describe_table(self, **kw: Any) -> dict[str, Any]:
        if not self.table:
            raise _err("ResourceNotFoundException")
        return {
            "Table": {
                "TableStatus": "ACTIVE",
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            }
        }

    def create_table(self, **kw: Any) -> dict[str, Any]:
        self.created, self.table = kw, True
        return {}

    # the DynamoClient Protocol's keyword-only calls (boto3's): **kw, read by name
    def batch_write_item(self, **kw: Any) -> dict[str, Any]:
        ((table, reqs),) = kw["RequestItems"].items()
        assert len(reqs) <= 25, "DynamoDB refuses more than 25 items"
        self.batches.append(len(reqs))
        if self.throttle:
            self.throttle -= 1
            raise _err("ProvisionedThroughputExceededException")
        keep = self.unprocessed.pop(0) if self.unprocessed else 0
        done, left = reqs[: len(reqs) - keep], reqs[len(reqs) - keep :]
        for r in done:
            if "PutRequest" in r:
                item = r["PutRequest"]["Item"]
                self.items[item["id"]] = item
            else:
                self.items.pop(r["DeleteRequest"]["Key"]["id"], None)
        return {"UnprocessedItems": {table: left} if left else {}}

    def batch_get_item(self, **kw: Any) -> dict[str, Any]:
        ((table, req),) = kw["RequestItems"].items()
        keys = req["Keys"]
        assert len(keys) <= 100, "DynamoDB refuses more than 100 keys"
        assert req["ConsistentRead"] is True
        self.gets.append(len(keys))
        keep = self.unread.pop(0) if self.unread else 0
        done, left = keys[: len(keys) - keep], keys[len(keys) - keep :]
        names = req["ExpressionAttributeNames"]
        wanted = {names[p.strip()] for p in req["ProjectionExpression"].split(",")}
        found = [
            {k: v for k, v in self.items[key["id"]].items() if k in wanted}
            for key in done
            if key["id"] in self.items
        ]
        self.items.update(self.after_read)
        self.after_read = {}
        return {
            "Responses": {table: found},
            "UnprocessedKeys": {table: {"Keys": left}} if left else {},
        }

    def put_item(self, **kw: Any) -> dict[str, Any]:
        item = kw["Item"]
        self.puts.append((item["id"], "ConditionExpression" in kw))
        if "ConditionExpression" in kw:
            have = self.items.get(item["id"])
            if have is not None and not have["v"] <= kw["ExpressionAttributeValues"][":v"]:
                raise _err("ConditionalCheckFailedException")
        self.items[item["id"]] = item
        return {}

    def delete_item(self, **kw: Any) -> dict[str, Any]:
        self.items.pop(kw["Key"]["id"], None)
        return {}


def _writer(client: FakeDynamo, sleeps: list[float] | None = None, **cfg: Any) -> DynamoWriter:
    config = DynamoDBSink.model_validate(
        {"type": "dynamodb", "from": "t", "table": "tbl", "partition_key": "id", **cfg}
    )
    w = DynamoWriter(
        "d",
        config,
        client,
        backoff=Backoff(0.01, 1.0, rand=lambda a, b: b),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        concurrency=config.concurrency,
    )
    w.open()
    return w


def _batch(n: int, **extra: Any) -> list[Any]:
    return [rec(f"k{i}", {"id": f"k{i}", "v": i, "price": 1.5, **extra}, i) for i in range(n)]


def test_splits_into_chunks_of_25_and_converts_floats() -> None:
    client = FakeDynamo()
    out = _writer(client).write(_batch(60))
    assert sorted(client.batches) == [10, 25, 25]  # chunks are sent concurrently
    assert out.counts["written"] == 60 and len(client.items) == 60
    assert client.items["k3"]["price"] == Decimal("1.5")


class BlockingDynamo(FakeDynamo):
    """Every BatchWriteItem waits until ``together`` calls are in flight (or times out):
    the writer must send its chunks concurrently to get through. ``fail`` chunks (by their
    first id) raise that error code."""

    def __init__(self, together: int, fail: dict[str, str] | None = None):
        super().__init__()
        self.barrier = threading.Barrier(together, timeout=5)
        self.fail = fail or {}

    def batch_write_item(self, **kw: Any) -> dict[str, Any]:
        self.barrier.wait()
        ((_table, reqs),) = kw["RequestItems"].items()
        code = self.fail.get(reqs[0]["PutRequest"]["Item"]["id"])
        if code:
            raise _err(code)
        return super().batch_write_item(**kw)


def test_chunks_are_written_concurrently() -> None:
    client = BlockingDynamo(together=4)
    out = _writer(client, concurrency=4).write(_batch(100))
    assert sorted(client.batches) == [25, 25, 25, 25]
    assert out.counts["written"] == 100 and len(client.items) == 100


def test_a_failed_chunk_fails_the_batch_after_the_others_finish() -> None:
    client = BlockingDynamo(together=3, fail={"k25": "InternalServerError"})
    with pytest.raises(RetriableError, match="InternalServerError"):
        _writer(client, concurrency=3).write(_batch(75))
    # the other two chunks were written (the runner retries the whole batch: same items)
    assert len(client.items) == 50


def test_unprocessed_items_are_retried_with_backoff_until_written() -> None:
    client, sleeps = FakeDynamo(unprocessed=[10, 4, 1]), list[float]()
    out = _writer(client, sleeps).write(_batch(25))
    assert client.batches == [25, 10, 4, 1]
    assert sleeps == [0.01, 0.02, 0.04]
    assert out.counts["written"] == 25 and len(client.items) == 25


def test_unprocessed_forever_is_retriable_not_lost() -> None:
    client = FakeDynamo(unprocessed=[5] * 100)
    with pytest.raises(RetriableError, match="unprocessed"):
        _writer(client).write(_batch(25))


def test_throttling_halves_the_rate_and_success_recovers_slowly() -> None:
    clock = [0.0]
    rate = AdaptiveRate(100.0, clock=lambda: clock[0])
    client = FakeDynamo(throttle=1)
    config = DynamoDBSink.model_validate(
        {
            "type": "dynamodb",
            "from": "t",
            "table": "tbl",
            "partition_key": "id",
            "rate_limit": {"rate": 100},
        }
    )
    throttles: list[int] = []
    w = DynamoWriter(
        "d",
        config,
        client,
        rate=rate,
        sleep=lambda s: None,
        on_throttle=lambda: throttles.append(1),
    )
    w.open()
    with pytest.raises(RetriableError, match="throttled"):
        w.write(_batch(5))
    assert rate.rate == 50.0 and throttles == [1]
    w.write(_batch(5))
    assert rate.rate == 52.0  # +2% of the ceiling per good write, not back at once
    for _ in range(100):
        rate.succeeded()
    assert rate.rate == 100.0


def test_rate_limit_makes_the_writer_wait() -> None:
    clock, sleeps = [0.0], list[float]()
    rate = AdaptiveRate(10.0, clock=lambda: clock[0])
    config = DynamoDBSink.model_validate(
        {
            "type": "dynamodb",
            "from": "t",
            "table": "tbl",
            "partition_key": "id",
            "rate_limit": {"rate": 10},
        }
    )
    w = DynamoWriter("d", config, FakeDynamo(), rate=rate, sleep=sleeps.append)
    w.open()
    w.write(_batch(25))
    assert sleeps == [pytest.approx(1.5)]  # 25 items at 10/s with a burst of 10


def test_version_guard_skips_older_and_replay_changes_nothing() -> None:
    client = FakeDynamo()
    w = _writer(client, version_field="v")
    w.write([rec("a", {"id": "a", "v": 5, "x": "new"})])
    out = w.write([rec("a", {"id": "a", "v": 3, "x": "old"}, 1)])
    assert out.counts == {"skipped_older": 1} and client.items["a"]["x"] == "new"
    out = w.write([rec("a", {"id": "a", "v": 5, "x": "new"})])
    assert out.counts["written"] == 1 and client.items["a"]["x"] == "new"


def test_newest_per_key_wins_inside_a_batch() -> None:
    client = FakeDynamo()
    out = _writer(client, version_field="v").write(
        [rec("a", {"id": "a", "v": 2}, 0), rec("a", {"id": "a", "v": 1}, 1)]
    )
    assert client.items["a"]["v"] == 2 and out.counts["superseded"] == 1


def test_poison_items_are_rejected_with_reason() -> None:
    client = FakeDynamo()
    batch = [
        rec("a", {"id": "a", "v": float("nan")}, 0),
        rec("b", {"id": "b", "blob": "x" * 500_000}, 1),
        rec("c", {"v": 1}, 2),
        rec("d", {"id": "d", "v": 1}, 3),
    ]
    out = _writer(client).write(batch)
    assert "NaN" in out.rejected[0] or "nan" in out.rejected[0]
    assert "400 KB" in out.rejected[1]
    assert "'id'" in out.rejected[2]
    assert list(client.items) == ["d"]


def test_tombstone_deletes_the_key() -> None:
    client = FakeDynamo()
    w = _writer(client)
    w.write(_batch(2))
    out = w.write([rec("k1", None, 5)])
    assert out.counts["deleted"] == 1 and list(client.items) == ["k0"]


def test_missing_table_is_fatal_or_created() -> None:
    config = DynamoDBSink.model_validate(
        {"type": "dynamodb", "from": "t", "table": "tbl", "partition_key": "id"}
    )
    with pytest.raises(FatalSinkError, match="create: true"):
        DynamoWriter("d", config, FakeDynamo(table=False)).open()
    client = FakeDynamo(table=False)
    _writer(client, create=True)
    assert client.created is not None and client.created["BillingMode"] == "PAY_PER_REQUEST"


def test_key_values_take_the_table_key_type() -> None:
    """An int id written to a table keyed by a string (e.g. one created by ``create: true``)
    is stored as '42', not refused; and its tombstone deletes that same item."""
    client = FakeDynamo()
    w = _writer(client, version_field="v")
    out = w.write([rec("42", {"id": 42, "v": 1}, 0)])
    assert out.counts["written"] == 1 and list(client.items) == ["42"]
    assert client.items["42"]["id"] == "42"
    w.write([rec("42", None, 1)])
    assert client.items == {}


def _stored(client: FakeDynamo, n: int, v: int, **extra: Any) -> None:
    for i in range(n):
        client.items[f"k{i}"] = {"id": f"k{i}", "v": v, **extra}


def test_stored_newer_versions_are_read_per_hundred_keys_and_not_put() -> None:
    """A replay: one BatchGetItem per 100 keys instead of one PutItem per record; the records
    the read cannot rule out are still put with the condition."""
    client = FakeDynamo()
    _stored(client, 240, 1000, x="stored")
    batch = [*_batch(240), rec("k7", {"id": "k7", "v": 2000}, 300), rec("n", {"id": "n", "v": 1})]
    out = _writer(client, version_field="v").write(batch)
    assert client.gets == [100, 100, 41]
    assert sorted(client.puts) == [("k7", True), ("n", True)]
    assert out.counts == {"skipped_older": 239, "superseded": 1, "written": 2}
    assert client.items["k7"]["v"] == 2000 and client.items["k8"]["x"] == "stored"


def test_unprocessed_keys_are_asked_again_with_backoff() -> None:
    client, sleeps = FakeDynamo(unread=[30, 5]), list[float]()
    _stored(client, 100, 1000)
    out = _writer(client, sleeps, version_field="v").write(_batch(100))
    assert client.gets == [100, 30, 5]
    assert sleeps == [0.01, 0.02]
    assert client.puts == [] and out.counts == {"skipped_older": 100}


def test_keys_left_unread_are_put_and_the_condition_decides() -> None:
    client = FakeDynamo(unread=[10] * 100)
    _stored(client, 10, 1000, x="stored")
    out = _writer(client, version_field="v").write(_batch(10))
    assert len(client.gets) == 8  # bounded, then the conditional puts take over
    assert client.puts == [(f"k{i}", True) for i in range(10)]
    assert out.counts == {"skipped_older": 10}
    assert all(item["x"] == "stored" for item in client.items.values())


def test_a_newer_version_written_after_the_read_still_wins() -> None:
    """A zombie (or any other writer) stores v9 between our read (v1) and our put (v5): the
    put's condition, not the read, keeps the newer item."""
    client = FakeDynamo()
    client.items["a"] = {"id": "a", "v": 1, "x": "v1"}
    client.after_read = {"a": {"id": "a", "v": 9, "x": "v9"}}
    out = _writer(client, version_field="v").write([rec("a", {"id": "a", "v": 5, "x": "v5"})])
    assert client.gets == [1] and client.puts == [("a", True)]
    assert out.counts == {"skipped_older": 1} and client.items["a"]["x"] == "v9"


def test_tombstones_are_not_read_and_still_delete() -> None:
    client = FakeDynamo()
    _stored(client, 3, 1000)
    out = _writer(client, version_field="v").write(
        [rec("k0", None, 0), rec("k1", {"id": "k1", "v": 1}, 1), rec("k2", None, 2)]
    )
    assert client.gets == [1]  # only the put's key
    assert out.counts == {"deleted": 2, "skipped_older": 1}
    assert list(client.items) == ["k1"] and client.items["k1"]["v"] == 1000


class TwoKeyDynamo(FakeDynamo):
    """A table keyed by (window_start: N, customer_id: S)."""

    def describe_table(self, **kw: Any) -> dict[str, Any]:
        return {
            "Table": {
                "TableStatus": "ACTIVE",
                "KeySchema": [
                    {"AttributeName": "window_start", "KeyType": "HASH"},
                    {"AttributeName": "customer_id", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "window_start", "AttributeType": "N"},
                    {"AttributeName": "customer_id", "AttributeType": "S"},
                ],
            }
        }

    def batch_write_item(self, **kw: Any) -> dict[str, Any]:
        ((_table, reqs),) = kw["RequestItems"].items()
        for r in reqs:
            if "PutRequest" in r:
                item = r["PutRequest"]["Item"]
                self.items[(item["window_start"], item["customer_id"])] = item
            else:
                key = r["DeleteRequest"]["Key"]
                self.items.pop((key["window_start"], key["customer_id"]), None)
        return {"UnprocessedItems": {}}


def test_tombstone_deletes_the_item_by_the_topics_key_fields() -> None:
    """Issue #15 defect 2: partition_key window_start, sort_key customer_id over a rank keyed
    [window_start, customer_id]: the tombstone deletes the member's item."""
    client = TwoKeyDynamo()
    config = DynamoDBSink.model_validate(
        {
            "type": "dynamodb",
            "from": "top",
            "table": "top",
            "partition_key": "customer_id",
            "sort_key": "window_start",
        }
    )
    w = DynamoWriter("d", config, client, key_fields=("window_start", "customer_id"))
    w.open()
    w.write([rec("[0,7]", {"window_start": 0, "customer_id": 7, "rank": 1})])
    assert list(client.items) == [(Decimal(0), "7")]
    w.write([rec("[0,7]", None, 1), rec("[0,8]", {"window_start": 0, "customer_id": 8}, 2)])
    assert list(client.items) == [(Decimal(0), "8")]
