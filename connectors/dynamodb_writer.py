"""DynamoDB sink (``type: dynamodb``): batched, idempotent puts and deletes.

- Items are the record with floats as ``Decimal``; NaN/Inf, items over 400 KB and records
  without the key attributes are rejected (dead letter) with the reason.
- Without ``version_field``: BatchWriteItem in chunks of at most 25 (one request per item
  key: the newest record per key wins within a batch), up to ``concurrency`` chunks in flight
  at once (a batch holds each key once, so chunks never race on a key; the batch returns
  when every chunk is written). ``UnprocessedItems`` are sent again with backoff, and count
  as throttling. A put that lands twice is harmless (same item).
- With ``version_field``: PutItem with ``attribute_not_exists(pk) OR version <= :v`` (BatchWrite
  takes no conditions), several at a time; a conditional check failure means the stored item
  is newer: ``skipped_older``, not an error, so a replay changes nothing. Before those puts,
  one BatchGetItem per 100 keys (consistent, key and version only) reads the stored versions
  and drops the puts whose stored version is newer (``skipped_older`` too): a replay or a
  restart costs one request per 100 records instead of one per record. The read is only an
  optimisation; the condition on each put remains the guarantee (against a writer racing in
  between, e.g. a zombie), and keys the read leaves unprocessed are simply put.
- Tombstones delete the key read from the Kafka key: by name when the topic's key fields are
  known (``key_fields``; ``check`` makes partition/sort key exactly those), else by position
  (``encode_key`` of partition key, sort key).
- ``rate_limit``: an ``AdaptiveRate`` that halves on throttling and recovers slowly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import orjson

from connectors.adaptive import AdaptiveRate
from connectors.backoff import Backoff
from connectors.chunkpool import ChunkPool
from connectors.docchecks import dynamo_item
from connectors.records import FatalSinkError, SinkRecord, WriteOutcome, key_parts
from headrace.config.keys import MEMBER
from headrace.errors import PoisonRecord, RetriableError

__all__ = ["CHUNK", "DynamoClient", "DynamoTarget", "DynamoWriter"]

log = logging.getLogger(__name__)

CHUNK = 25
#: keys per BatchGetItem (DynamoDB's limit)
READ_CHUNK = 100
UNPROCESSED_ATTEMPTS = 8
_THROTTLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_FATAL = {
    "UnrecognizedClientException",
    "AccessDeniedException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "ResourceNotFoundException",
}


class DynamoClient(Protocol):
    """The part of a boto3 DynamoDB client (with Python types: ``resource.meta.client``)."""

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]: ...
    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]: ...
    def put_item(self, **kwargs: Any) -> dict[str, Any]: ...
    def delete_item(self, **kwargs: Any) -> dict[str, Any]: ...
    def describe_table(self, **kwargs: Any) -> dict[str, Any]: ...
    def create_table(self, **kwargs: Any) -> dict[str, Any]: ...


class DynamoTarget(Protocol):
    """What the writer reads of its config (``connectors.dynamodb.DynamoDBSink``)."""

    @property
    def table(self) -> str: ...
    @property
    def partition_key(self) -> str: ...
    @property
    def sort_key(self) -> str | None: ...
    @property
    def version_field(self) -> str | None: ...
    @property
    def create(self) -> bool: ...
    @property
    def rate_limit(self) -> Any: ...
    @property
    def concurrency(self) -> int: ...


class DynamoWriter:
    """Writes batches to one table. ``write`` is called from the runner's thread only."""

    def __init__(
        self,
        name: str,
        config: DynamoTarget,
        client: DynamoClient,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rate: AdaptiveRate | None = None,
        on_throttle: Callable[[], None] = lambda: None,
        concurrency: int | None = None,
        key_fields: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._client = client
        # the key fields of the topic read (headrace.config.keys): a tombstone's key names
        # them; None: the key is encode_key of (partition_key, sort_key), by position
        self._key_fields = list(key_fields) if key_fields and MEMBER not in key_fields else None
        self._backoff = backoff or Backoff(base=0.05, cap=5.0)
        self._sleep = sleep
        self._rate = rate
        if rate is None and config.rate_limit is not None:
            self._rate = AdaptiveRate(config.rate_limit.per_second)
        self._on_throttle = on_throttle
        self._chunks = ChunkPool(name, config.concurrency if concurrency is None else concurrency)
        # the rate limiter is shared by the chunks in flight
        self._rate_lock = threading.Lock()
        self._key_types: dict[str, str] = {}
        self._keys = [config.partition_key] + ([config.sort_key] if config.sort_key else [])

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Check the table (creating it with ``create: true``); learn the key types."""
        table = self.config.table
        try:
            desc = self._call(lambda: self._client.describe_table(TableName=table))
        except FatalSinkError:
            if not self.config.create:
                raise
            self._create()
            desc = self._call(lambda: self._client.describe_table(TableName=table))
        attrs = desc["Table"].get("AttributeDefinitions", [])
        self._key_types = {a["AttributeName"]: a["AttributeType"] for a in attrs}
        schema = [k["AttributeName"] for k in desc["Table"].get("KeySchema", [])]
        if schema and sorted(schema) != sorted(self._keys):
            raise FatalSinkError(
                f"sink {self.name!r}: table {table!r} has key {schema}, the sink maps "
                f"{self._keys}; set partition_key/sort_key to the table's key"
            )

    def _create(self) -> None:
        defs = [{"AttributeName": self.config.partition_key, "AttributeType": "S"}]
        schema = [{"AttributeName": self.config.partition_key, "KeyType": "HASH"}]
        if self.config.sort_key:
            defs.append({"AttributeName": self.config.sort_key, "AttributeType": "S"})
            schema.append({"AttributeName": self.config.sort_key, "KeyType": "RANGE"})
        log.info("sink %r: creating table %r (on-demand)", self.name, self.config.table)
        try:
            self._client.create_table(
                TableName=self.config.table,
                KeySchema=schema,
                AttributeDefinitions=defs,
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as exc:
            if "ResourceInUse" not in type(exc).__name__ + str(exc):
                raise
        for _ in range(60):
            status = self._client.describe_table(TableName=self.config.table)["Table"]
            if status.get("TableStatus", "ACTIVE") == "ACTIVE":
                return
            self._sleep(1.0)

    def close(self) -> None:
        self._chunks.close()

    # -- building requests ------------------------------------------------------------------

    def key_of(self, record: SinkRecord) -> dict[str, Any]:
        """The item key of ``record``: from its value, or for a tombstone from the Kafka key."""
        if record.value is not None:
            missing = [k for k in self._keys if record.value.get(k) in (None, "")]
            if missing:
                raise PoisonRecord(f"key attribute {missing[0]!r} is missing or empty")
            # the table's key type decides (an int id in a table keyed by a string: '42')
            return {k: self._typed(k, _key_value(record.value[k])) for k in self._keys}
        if record.key is None:
            raise PoisonRecord("tombstone without a Kafka key: nothing to delete")
        text = record.key.decode("utf-8", errors="replace")
        if self._key_fields is not None:
            try:
                named = key_parts(record.key, self._key_fields)
            except ValueError as exc:
                raise PoisonRecord(f"tombstone {exc}") from None
            missing = [k for k in self._keys if k not in named]
            if missing:
                raise PoisonRecord(f"tombstone key has no {missing[0]!r}")
            return {k: self._typed(k, named[k]) for k in self._keys}
        if len(self._keys) == 1:
            parts: list[Any] = [text]
        else:
            try:
                parts = orjson.loads(text)
            except orjson.JSONDecodeError:
                parts = []
            if not isinstance(parts, list) or len(parts) != len(self._keys):
                raise PoisonRecord(f"tombstone key is not a JSON array of {self._keys}")
        return {k: self._typed(k, v) for k, v in zip(self._keys, parts, strict=True)}

    def _typed(self, attr: str, value: Any) -> Any:
        if self._key_types.get(attr) == "N":
            from decimal import Decimal, InvalidOperation

            try:
                return Decimal(str(value))
            except InvalidOperation:
                raise PoisonRecord(f"key {attr!r} is {value!r}, the table wants a number") from None
        return value if self._key_types.get(attr) == "B" else str(value)

    def plan(
        self, batch: Sequence[SinkRecord], outcome: WriteOutcome
    ) -> list[tuple[int, dict[str, Any], dict[str, Any] | None]]:
        """(batch index, key, item or None for delete) for the newest record per key."""
        chosen: dict[tuple[Any, ...], tuple[int, dict[str, Any], dict[str, Any] | None]] = {}
        for i, record in enumerate(batch):
            try:
                key = self.key_of(record)
                item = None
                if record.value is not None:
                    item = dynamo_item(record.value)
                    item.update(key)
                    if self.config.version_field and item.get(self.config.version_field) is None:
                        raise PoisonRecord(
                            f"version field {self.config.version_field!r} is missing"
                        )
            except PoisonRecord as exc:
                outcome.reject(i, f"sink {self.name!r}: {exc}")
                continue
            ident = tuple(str(key[k]) for k in self._keys)
            prev = chosen.get(ident)
            if prev is not None:
                outcome.counts["superseded"] += 1
                if not self._newer(item, prev[2]):
                    continue
            chosen[ident] = (i, key, item)
        return sorted(chosen.values(), key=lambda t: t[0])

    def _newer(self, item: dict[str, Any] | None, than: dict[str, Any] | None) -> bool:
        vf = self.config.version_field
        if vf is None or item is None or than is None:
            return True
        try:
            return bool(item[vf] >= than[vf])
        except TypeError:
            return True

    # -- writing ----------------------------------------------------------------------------

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        outcome = WriteOutcome()
        planned = self.plan(batch, outcome)
        if self.config.version_field:
            self._write_conditional(self._drop_older(planned, outcome), outcome)
        else:
            self._write_chunks(planned, outcome)
        return outcome

    def _write_chunks(
        self,
        planned: list[tuple[int, dict[str, Any], dict[str, Any] | None]],
        outcome: WriteOutcome,
    ) -> None:
        """BatchWriteItem ``planned`` in chunks of ``CHUNK``, several in flight at once."""
        chunks = [planned[start : start + CHUNK] for start in range(0, len(planned), CHUNK)]
        self._chunks.run(self._write_chunk, chunks, outcome)

    def _limit(self, n: int) -> None:
        if self._rate is not None:
            with self._rate_lock:
                wait = self._rate.acquire(n)
            if wait > 0:
                self._sleep(wait)

    def _write_chunk(
        self, chunk: list[tuple[int, dict[str, Any], dict[str, Any] | None]], outcome: WriteOutcome
    ) -> None:
        table = self.config.table
        requests = [
            {"DeleteRequest": {"Key": key}} if item is None else {"PutRequest": {"Item": item}}
            for _i, key, item in chunk
        ]
        pending = requests
        for attempt in range(UNPROCESSED_ATTEMPTS):
            self._limit(len(pending))
            try:
                answer = self._call(
                    partial(self._client.batch_write_item, RequestItems={table: pending})
                )
            except PoisonRecord:  # a ValidationException: find the item(s) one by one
                self._write_singly(chunk, outcome)
                return
            left = answer.get("UnprocessedItems", {}).get(table, [])
            if not left:
                if self._rate is not None:
                    with self._rate_lock:
                        self._rate.succeeded()
                break
            self._throttled()
            pending = left
            self._sleep(self._backoff.delay(attempt))
        else:
            raise RetriableError(
                f"sink {self.name!r}: table {table!r} left {len(pending)} item(s) unprocessed "
                f"after {UNPROCESSED_ATTEMPTS} tries (throttled)",
                retry_after=1.0,
            )
        for _i, _key, item in chunk:
            outcome.counts["written" if item is not None else "deleted"] += 1

    def _write_singly(
        self, chunk: list[tuple[int, dict[str, Any], dict[str, Any] | None]], outcome: WriteOutcome
    ) -> None:
        for index, key, item in chunk:
            try:
                self._put_or_delete(key, item)
                outcome.counts["written" if item is not None else "deleted"] += 1
            except PoisonRecord as exc:
                outcome.reject(index, f"sink {self.name!r}: refused by DynamoDB: {exc}")

    def _put_or_delete(self, key: dict[str, Any], item: dict[str, Any] | None) -> str:
        """One conditional put or a delete; returns the outcome word."""
        table = self.config.table
        if item is None:
            self._call(lambda: self._client.delete_item(TableName=table, Key=key))
            return "deleted"
        vf = self.config.version_field
        if vf is None:
            self._call(lambda: self._client.put_item(TableName=table, Item=item))
            return "written"
        try:
            self._call(
                lambda: self._client.put_item(
                    TableName=table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#pk) OR #v <= :v",
                    ExpressionAttributeNames={"#pk": self.config.partition_key, "#v": vf},
                    ExpressionAttributeValues={":v": item[vf]},
                )
            )
        except _ConditionFailed:
            return "skipped_older"
        return "written"

    def _drop_older(
        self,
        planned: list[tuple[int, dict[str, Any], dict[str, Any] | None]],
        outcome: WriteOutcome,
    ) -> list[tuple[int, dict[str, Any], dict[str, Any] | None]]:
        """``planned`` without the puts whose stored version is newer (``skipped_older``),
        read with BatchGetItem. Deletes, and puts whose stored version is unknown, stay."""
        vf = self.config.version_field
        if vf is None:
            return planned
        puts = [key for _i, key, item in planned if item is not None]
        stored: dict[tuple[str, ...], Any] = {}
        for start in range(0, len(puts), READ_CHUNK):
            stored.update(self._read_versions(puts[start : start + READ_CHUNK], vf))
        kept = []
        for entry in planned:
            _index, key, item = entry
            have = stored.get(_ident(key)) if item is not None else None
            if item is not None and have is not None and _older(item[vf], have):
                outcome.counts["skipped_older"] += 1
            else:
                kept.append(entry)
        return kept

    def _read_versions(self, keys: list[dict[str, Any]], vf: str) -> dict[tuple[str, ...], Any]:
        """Stored ``vf`` per key ident for up to 100 ``keys`` (absent: no item or no version).
        ``UnprocessedKeys`` are asked again with backoff; keys still unread stay unknown."""
        table = self.config.table
        names = {f"#k{n}": k for n, k in enumerate(self._keys)}
        names["#v"] = vf
        request: dict[str, Any] = {
            "ConsistentRead": True,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        found: dict[tuple[str, ...], Any] = {}
        pending = keys
        for attempt in range(UNPROCESSED_ATTEMPTS):
            try:
                answer = self._call(
                    partial(
                        self._client.batch_get_item,
                        RequestItems={table: {**request, "Keys": pending}},
                    )
                )
            except PoisonRecord as exc:  # a ValidationException: the puts will decide
                log.warning("sink %r: reading stored versions failed (%s)", self.name, exc)
                return found
            for stored in answer.get("Responses", {}).get(table, []):
                if stored.get(vf) is not None:
                    found[_ident({k: stored.get(k) for k in self._keys})] = stored[vf]
            pending = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if not pending:
                break
            self._throttled()
            self._sleep(self._backoff.delay(attempt))
        return found

    def _write_conditional(
        self,
        planned: list[tuple[int, dict[str, Any], dict[str, Any] | None]],
        outcome: WriteOutcome,
    ) -> None:
        self._limit(len(planned))

        def one(entry: tuple[int, dict[str, Any], dict[str, Any] | None]) -> tuple[int, str]:
            index, key, item = entry
            try:
                return index, self._put_or_delete(key, item)
            except PoisonRecord as exc:
                return index, f"!{exc}"

        for index, word in self._chunks.executor().map(one, planned):
            if word.startswith("!"):
                outcome.reject(index, f"sink {self.name!r}: refused by DynamoDB: {word[1:]}")
            else:
                outcome.counts[word] += 1

    def _throttled(self) -> None:
        self._on_throttle()
        if self._rate is not None:
            with self._rate_lock:
                self._rate.throttled()

    def _call(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a boto3 call: throttling/network → RetriableError, auth/missing table → fatal,
        ValidationException → PoisonRecord, a failed condition → ``_ConditionFailed``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            msg = exc.response.get("Error", {}).get("Message", "")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed() from None
            if code in _THROTTLE:
                self._throttled()
                raise RetriableError(
                    f"sink {self.name!r}: DynamoDB throttled ({code})", retry_after=0.2
                ) from None
            if code in _FATAL:
                raise FatalSinkError(
                    f"sink {self.name!r}: DynamoDB table {self.config.table!r}: {code}: {msg}; "
                    + (
                        "create the table or set create: true"
                        if code == "ResourceNotFoundException"
                        else "check the credentials and the table's permissions"
                    )
                ) from None
            if code == "ValidationException":
                raise PoisonRecord(f"{code}: {msg}") from None
            raise RetriableError(f"sink {self.name!r}: DynamoDB error {code}: {msg}") from None
        except BotoCoreError as exc:
            raise RetriableError(
                f"sink {self.name!r}: DynamoDB unreachable ({type(exc).__name__})", retry_after=0.5
            ) from None


class _ConditionFailed(Exception):
    """The stored item is newer than the one being put."""


def _ident(key: dict[str, Any]) -> tuple[str, ...]:
    """A hashable form of an item key, equal for the key we send and the key DynamoDB returns
    (a ``Binary`` comes back wrapped, a number normalised)."""
    from decimal import Decimal

    return tuple(
        str(v.normalize() if isinstance(v, Decimal) else getattr(v, "value", v))
        for v in key.values()
    )


def _older(version: Any, stored: Any) -> bool:
    """True when ``version`` is older than the ``stored`` one (incomparable types: False, and
    the conditional put decides)."""
    try:
        return bool(version < stored)
    except TypeError:
        return False


def _key_value(value: Any) -> Any:
    if isinstance(value, float):
        from decimal import Decimal

        return Decimal(repr(value))
    return value
