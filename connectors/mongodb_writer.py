"""MongoDB sink (``type: mongodb``): idempotent bulk writes with a version guard.

Each record becomes one operation on ``_id`` (from ``id`` fields, a sub-document when there
are several, or the Kafka key as text). A tombstone has no fields: its ``_id`` is read from
its key, by name when the topic's key fields are known (``key_fields``: ``check`` makes the
``id`` fields exactly those), else by position:

- ``insert``: InsertOne; a duplicate key means "already written", never an error.
- ``upsert``: UpdateOne ``$set`` with upsert (fields merge into the stored document).
- ``replace``: ReplaceOne with upsert (the stored document becomes the record).
- ``delete-on-tombstone``: as ``upsert``, and a tombstone deletes ``_id``.

With ``version_field`` the filter also requires ``version_field <= new version``: an older
record matches nothing, its upsert then collides on ``_id`` (E11000) and counts as
``skipped_older``. Because FerretDB's upsert is not atomic under races, a collision is tried
once more before it is called older. Within a batch only the newest record per ``_id`` is
sent (``superseded`` counts the rest), since unordered bulk writes have no order.

Operations go in requests of at most ``MAX_OPS``, up to ``concurrency`` requests in flight at
once (a batch holds each ``_id`` once, so requests never race on a document; the batch
returns when every request is answered). Upstream FerretDB 1.24 hangs on an update
command of 100+ statements that match documents; the stack's FerretDB is patched (see
``headrace_dev/stack/ferretdb_patches.py``), so point the sink at it or at MongoDB, not at an
unpatched FerretDB 1.x. Per-document errors other than E11000 reject that record only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from connectors.chunkpool import ChunkPool
from connectors.docchecks import mongo_problem
from connectors.records import FatalSinkError, SinkRecord, WriteOutcome, key_parts
from headrace.config.keys import MEMBER
from headrace.errors import RetriableError

__all__ = ["MAX_OPS", "Collection", "MongoTarget", "MongoWriter"]

MAX_OPS = 500
_DUPLICATE = 11000
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed


class Collection(Protocol):
    """The part of ``pymongo.collection.Collection`` the sink uses."""

    def bulk_write(self, requests: list[Any], ordered: bool = ...) -> Any: ...
    def create_index(self, keys: Any, **kwargs: Any) -> Any: ...
    def find(self, filter: Any, projection: Any = ...) -> Any: ...


class MongoTarget(Protocol):
    """What the writer reads of its config (``connectors.mongodb.MongoSink``)."""

    @property
    def id(self) -> Sequence[str] | None: ...
    @property
    def write(self) -> str: ...
    @property
    def version_field(self) -> str | None: ...
    @property
    def indexes(self) -> Sequence[Any]: ...
    @property
    def concurrency(self) -> int: ...


class MongoWriter:
    """Writes batches to one collection. ``write`` is called from the runner's thread only;
    the requests of one batch may run on ``concurrency`` threads of its own."""

    def __init__(
        self,
        name: str,
        config: MongoTarget,
        collection: Collection,
        *,
        concurrency: int | None = None,
        key_fields: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._coll = collection
        self._id_fields = list(config.id or [])
        # the key fields of the topic read (headrace.config.keys): a tombstone's key names
        # them, and the id is picked from them by name; None: by position (the key is
        # encode_key of the id fields, the documented contract for external topics)
        self._key_fields = list(key_fields) if key_fields and MEMBER not in key_fields else None
        self._vf = config.version_field
        self._chunks = ChunkPool(name, config.concurrency if concurrency is None else concurrency)

    def open(self) -> None:
        """Create the configured indexes (if missing)."""
        for index in self.config.indexes:
            kwargs: dict[str, Any] = {"unique": index.unique}
            if index.name:
                kwargs["name"] = index.name
            _call(self.name, lambda i=index, k=kwargs: self._coll.create_index(i.key_spec(), **k))

    def close(self) -> None:
        """Stop the request threads; the client is closed by its owner."""
        self._chunks.close()

    # -- building operations ----------------------------------------------------------------

    def doc_id(self, record: SinkRecord) -> Any:
        """The ``_id`` of ``record``; ValueError says why there is none."""
        value = record.value
        if self._id_fields and value is not None:
            missing = [f for f in self._id_fields if f not in value]
            if missing:
                raise ValueError(f"id field {missing[0]!r} is missing from the record")
            if len(self._id_fields) == 1:
                return value[self._id_fields[0]]
            return {f: value[f] for f in self._id_fields}
        if record.key is None:
            raise ValueError("the record has no Kafka key and the sink has no 'id' fields")
        text = record.key.decode("utf-8", errors="replace")
        if not self._id_fields:
            return text
        if self._key_fields is not None and len(self._key_fields) > 1:
            parts = key_parts(record.key, self._key_fields)
            missing = [f for f in self._id_fields if f not in parts]
            if missing:
                raise ValueError(f"id field {missing[0]!r} is not in the topic's key")
            if len(self._id_fields) == 1:
                return parts[self._id_fields[0]]
            return {f: parts[f] for f in self._id_fields}
        return _id_from_key(text, self._id_fields)

    def _version(self, record: SinkRecord) -> Any:
        assert self._vf is not None and record.value is not None
        if self._vf not in record.value or record.value[self._vf] is None:
            raise ValueError(f"version field {self._vf!r} is missing from the record")
        return record.value[self._vf]

    def _operation(self, record: SinkRecord, doc_id: Any) -> Any:
        from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateOne

        if record.value is None:
            one_text = len(self._id_fields) == 1 and (
                self._key_fields is None or len(self._key_fields) == 1
            )
            if one_text and type(doc_id) is int:
                # the key's text cannot tell the number 123 from the string "123": either goes
                return DeleteMany({"_id": {"$in": [doc_id, str(doc_id)]}})
            if one_text and doc_id == "":
                # nor a null id from an empty text (encode_key writes null as "")
                return DeleteMany({"_id": {"$in": ["", None]}})
            return DeleteOne({"_id": doc_id})
        doc = dict(record.value)
        doc["_id"] = doc_id
        if self.config.write == "insert":
            return InsertOne(doc)
        filt: dict[str, Any] = {"_id": doc_id}
        if self._vf is not None:
            filt[self._vf] = {"$lte": self._version(record)}
        if self.config.write == "replace":
            return ReplaceOne(filt, doc, upsert=True)
        return UpdateOne(filt, {"$set": doc}, upsert=True)

    def plan(self, batch: Sequence[SinkRecord], outcome: WriteOutcome) -> list[tuple[int, Any]]:
        """(batch index, operation) for the newest record per ``_id``; rejects the rest."""
        return [(i, op) for i, op, _id, _r in self._plan(batch, outcome)]

    def _plan(
        self, batch: Sequence[SinkRecord], outcome: WriteOutcome
    ) -> list[tuple[int, Any, Any, SinkRecord]]:
        chosen: dict[Any, tuple[int, Any, Any, SinkRecord]] = {}
        for i, record in enumerate(batch):
            try:
                if record.value is None and self.config.write != "delete-on-tombstone":
                    outcome.counts["skipped_tombstone"] += 1
                    continue
                if record.value is not None:
                    problem = mongo_problem(record.value, len(record.raw or b""))
                    if problem:
                        raise ValueError(problem)
                doc_id = self.doc_id(record)
                op = self._operation(record, doc_id)
            except ValueError as exc:
                outcome.reject(i, f"sink {self.name!r}: {exc}")
                continue
            key = _hashable(doc_id)
            prev = chosen.get(key)
            if prev is not None and not self._newer(record, prev[3]):
                outcome.counts["superseded"] += 1
                continue
            if prev is not None:
                outcome.counts["superseded"] += 1
            chosen[key] = (i, op, doc_id, record)
        return sorted(chosen.values(), key=lambda t: t[0])

    def _drop_older(
        self, chunk: list[tuple[int, Any, Any, SinkRecord]], outcome: WriteOutcome
    ) -> list[tuple[int, Any]]:
        """The chunk minus records older than what is stored (one read per chunk).

        The guarded filter still protects against a concurrent writer; this read only spares
        FerretDB the failing upserts (and a replay does no writes at all)."""
        vf = self._vf
        upserts = [t for t in chunk if t[3].value is not None]
        if vf is None or not upserts:
            return [(i, op) for i, op, _d, _r in chunk]
        ids = [d for _i, _op, d, _r in upserts]
        stored = {
            _hashable(doc["_id"]): doc.get(vf)
            for doc in _call(
                self.name, lambda: list(self._coll.find({"_id": {"$in": ids}}, {vf: 1}))
            )
        }
        keep: list[tuple[int, Any]] = []
        for i, op, doc_id, record in chunk:
            have = stored.get(_hashable(doc_id))
            if record.value is not None and have is not None:
                try:
                    older = bool(have > self._version(record))
                except TypeError:
                    older = False
                if older:
                    outcome.counts["skipped_older"] += 1
                    continue
            keep.append((i, op))
        return keep

    def _newer(self, record: SinkRecord, than: SinkRecord) -> bool:
        if self._vf is None or record.value is None or than.value is None:
            return True
        try:
            return bool(self._version(record) >= self._version(than))
        except TypeError:
            return True

    # -- writing ----------------------------------------------------------------------------

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        """Write ``batch`` (see the module docstring); raises RetriableError/FatalSinkError."""
        outcome = WriteOutcome()
        planned = self._plan(batch, outcome)
        chunks = [planned[start : start + MAX_OPS] for start in range(0, len(planned), MAX_OPS)]
        self._chunks.run(self._write_planned, chunks, outcome)
        return outcome

    def _write_planned(
        self, chunk: list[tuple[int, Any, Any, SinkRecord]], outcome: WriteOutcome
    ) -> None:
        """One request's worth: drop what is older than stored, write the rest."""
        kept = self._drop_older(chunk, outcome)
        if kept:
            self._write_chunk(kept, outcome, retry_collisions=True)

    def _write_chunk(
        self, chunk: list[tuple[int, Any]], outcome: WriteOutcome, *, retry_collisions: bool
    ) -> None:
        from pymongo.errors import BulkWriteError, OperationFailure

        requests = [op for _i, op in chunk]
        try:
            result = _call(self.name, lambda: self._coll.bulk_write(requests, ordered=False))
            _count(dict(result.bulk_api_result), outcome)
            return
        except BulkWriteError as exc:
            details = exc.details
        except KeyError:  # FerretDB answered without a count pymongo expects: go one by one
            if len(chunk) > 1:
                for item in chunk:
                    self._write_chunk([item], outcome, retry_collisions=retry_collisions)
                return
            if self.config.write == "insert" or self._vf is not None:
                outcome.counts["skipped_older" if self._vf else "skipped_existing"] += 1
                return
            raise RetriableError(f"sink {self.name!r}: unreadable answer from the server") from None
        except OperationFailure as exc:  # the whole request refused: find the culprit(s)
            if len(chunk) == 1:
                outcome.reject(chunk[0][0], f"sink {self.name!r}: refused by MongoDB: {exc}")
                return
            for item in chunk:
                self._write_chunk([item], outcome, retry_collisions=retry_collisions)
            return
        if details.get("writeConcernErrors"):
            raise RetriableError(
                f"sink {self.name!r}: write concern not satisfied "
                f"({details['writeConcernErrors'][0].get('errmsg', '?')})"
            )
        _count(dict(details), outcome)
        collided: list[tuple[int, Any]] = []
        for err in details.get("writeErrors", []):
            index, op = chunk[err["index"]]
            if err.get("code") == _DUPLICATE:
                if self.config.write == "insert":
                    outcome.counts["skipped_existing"] += 1
                elif retry_collisions:
                    collided.append((index, op))
                else:
                    outcome.counts["skipped_older" if self._vf else "skipped_existing"] += 1
            else:
                outcome.reject(
                    index, f"sink {self.name!r}: refused by MongoDB: {err.get('errmsg')}"
                )
        if collided:
            self._write_chunk(collided, outcome, retry_collisions=False)


def _count(result: Any, outcome: WriteOutcome) -> None:
    outcome.counts["inserted"] += int(result.get("nInserted", 0)) + int(result.get("nUpserted", 0))
    outcome.counts["updated"] += int(result.get("nMatched", 0))
    outcome.counts["deleted"] += int(result.get("nRemoved", 0))


def _call(name: str, fn: Any) -> Any:
    """Run a pymongo call, mapping connection trouble to RetriableError, auth to fatal."""
    from pymongo.errors import (
        BulkWriteError,
        ConnectionFailure,
        ExecutionTimeout,
        OperationFailure,
        ServerSelectionTimeoutError,
        WTimeoutError,
    )

    try:
        return fn()
    except BulkWriteError:
        raise
    except (ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout, WTimeoutError) as exc:
        raise RetriableError(
            f"sink {name!r}: MongoDB unreachable or slow ({type(exc).__name__})", retry_after=0.5
        ) from None
    except OperationFailure as exc:
        if exc.code in _AUTH_CODES:
            raise FatalSinkError(
                f"sink {name!r}: MongoDB refused the credentials (code {exc.code}); "
                "fix the user/password in 'uri'"
            ) from None
        raise


def _id_from_key(text: str, fields: list[str]) -> Any:
    """The ``_id`` a tombstone's key stands for (the key is ``encode_key`` of the id fields)."""
    import orjson

    if len(fields) == 1:
        # a number only when the text is one as encode_key writes it ("00123" is a string)
        if text.lstrip("-").isdigit() and str(int(text)) == text:
            return int(text)
        return text
    try:
        parts = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError(f"key is not a JSON array of {len(fields)} id fields") from None
    if not isinstance(parts, list) or len(parts) != len(fields):
        raise ValueError(f"key is not a JSON array of {len(fields)} id fields")
    return dict(zip(fields, parts, strict=True))


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
