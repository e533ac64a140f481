"""What a sink would write, without a server: the writers' ``plan`` over a topic's messages.

A sink reads its ``from`` topic as the sink runner does (``connectors.runner.SinkRunner``):
partitions in turn, each in offset order; values decoded from JSON (bytes that are not a
JSON object become a dead letter, "cannot decode the value"); batches of the sink's
``batch_size``. Each batch goes to the writer's ``plan`` (``MongoWriter.plan``,
``DynamoWriter.plan``): the newest record per id, the operation and its version guard; what
``plan`` rejects becomes a dead letter of the sink, as the runner sends it. The writer is the
one ``connectors.build`` builds (the topic's key fields given, so a tombstone's id is read
from its key by name), on no client: ``plan`` never calls one. A DynamoDB table's key types
are taken as strings (what ``create: true`` makes).

Operations are shown as plain mappings:

- MongoDB: ``{op: insert|upsert|replace|delete, id: <_id>, doc: <document without _id>,
  guard: "version <= 3"}`` (``guard`` only with ``version_field``; a delete of a one-field
  numeric id matches the number and its text: ``id: {$in: [7, "7"]}``);
- DynamoDB: ``{op: put|delete, key: <item key>, item: <item>, guard: "version <= 3"}``
  (numbers as numbers).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from connectors.records import SinkRecord, WriteOutcome
from headrace.config import Pipeline
from headrace.config.keys import key_fields
from headrace.dlq import DeadLetter
from headrace_cli.pipeline_test.topics import Landed
from headrace_cli.pipeline_test.values import plain
from schemas import JsonCodec
from streams.stages.base import OutMessage

__all__ = ["PLANNABLE", "SinkPlan", "missing_library", "plan_sink"]

PLANNABLE = ("mongodb", "dynamodb")
"""Sink types whose writes a test can check."""

_LIBRARIES = {"mongodb": ("pymongo", "mongodb")}
"""Sink type -> (the package its operations are made of, the headrace extra that has it)."""

_CODEC = JsonCodec()


@dataclass
class SinkPlan:
    """A sink's operations, in the order it would send them, and its dead letters."""

    operations: list[dict[str, Any]] = field(default_factory=list)
    dead: list[OutMessage] = field(default_factory=list)


def missing_library(name: str, sink_type: str) -> str | None:
    """Why sink ``name``'s operations cannot be shown here (a library missing, with the
    install hint), or None. A DynamoDB plan needs no library; a MongoDB plan is made of
    pymongo's operations."""
    needed = _LIBRARIES.get(sink_type)
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return None
    package, extra = needed
    return (
        f"sink {name!r} (type {sink_type}) needs the Python package {package!r} to show "
        f"its operations, which is not installed: pip install 'headrace[{extra}]'"
    )


class _NoServer:
    """Stands for the collection or client a writer is built on; ``plan`` never calls it."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"a test's sink has no server to call ({name})")


def _writer(pipeline: Pipeline, name: str) -> Any:
    config: Any = pipeline.sinks[name]
    fields = key_fields(pipeline).get(config.from_)
    if config.type == "mongodb":
        from connectors.mongodb_writer import MongoWriter

        return MongoWriter(name, config, _NoServer(), key_fields=fields)
    if config.type == "dynamodb":
        from connectors.dynamodb_writer import DynamoWriter

        return DynamoWriter(name, config, _NoServer(), key_fields=fields)
    raise ValueError(
        f"sink {name!r} is of type {config.type!r}; a test can check the writes of "
        f"{' and '.join(PLANNABLE)} sinks"
    )


def _records(messages: list[Landed], plan: SinkPlan, name: str) -> list[SinkRecord]:
    """The messages as the sink runner reads and decodes them (undecodable: dead letters)."""
    ordered = sorted(messages, key=lambda m: (m.msg.partition, m.msg.offset))
    out: list[SinkRecord] = []
    for landed in ordered:
        m = landed.msg
        record = SinkRecord(m.topic, m.partition, m.offset, m.key, None, m.value, m.timestamp_ms)
        try:
            record.value = None if m.value is None else _CODEC.decode(m.value)
        except ValueError as exc:
            plan.dead.append(_letter(name, record, f"cannot decode the value: {exc}"))
            continue
        out.append(record)
    return out


def _letter(name: str, record: SinkRecord, reason: str) -> OutMessage:
    letter = DeadLetter(
        record.topic,
        name,
        "PoisonRecord",
        reason,
        record.position,
        record.key,
        record.raw,
        record.timestamp_ms,
    )
    return OutMessage(
        record.topic + ".dlq", record.key, record.raw, record.timestamp_ms, letter.headers()
    )


def plan_sink(pipeline: Pipeline, name: str, messages: list[Landed]) -> SinkPlan:
    """The operations sink ``name`` would send for ``messages`` of its topic (module doc)."""
    config: Any = pipeline.sinks[name]
    writer = _writer(pipeline, name)
    plan = SinkPlan()
    records = _records(messages, plan, name)
    size = config.batch_size
    for start in range(0, len(records), size):
        batch = records[start : start + size]
        outcome = WriteOutcome()
        if config.type == "mongodb":
            plan.operations += [mongo_view(op) for _i, op in writer.plan(batch, outcome)]
        else:
            guard = config.version_field
            plan.operations += [
                dynamo_view(key, item, guard) for _i, key, item in writer.plan(batch, outcome)
            ]
        for index, reason in sorted(outcome.rejected.items()):
            plan.dead.append(_letter(name, batch[index], reason))
    return plan


def _mapping(view: dict[str, Any]) -> dict[str, Any]:
    out = plain(view)
    assert isinstance(out, dict)
    return out


def mongo_view(op: Any) -> dict[str, Any]:
    """A pymongo write operation as a plain mapping (see the module doc)."""
    kind = type(op).__name__
    filt: dict[str, Any] = dict(getattr(op, "_filter", None) or {})
    doc: dict[str, Any] = dict(getattr(op, "_doc", None) or {})
    if kind == "InsertOne":
        view: dict[str, Any] = {"op": "insert", "id": doc.pop("_id", None), "doc": doc}
        return _mapping(view)
    if kind in ("DeleteOne", "DeleteMany"):
        return _mapping({"op": "delete", "id": filt.get("_id")})
    view = {"op": "replace" if kind == "ReplaceOne" else "upsert", "id": filt.pop("_id", None)}
    body = doc.get("$set", doc) if kind == "UpdateOne" else doc
    view["doc"] = {k: v for k, v in body.items() if k != "_id"}
    for fname, condition in filt.items():
        if isinstance(condition, dict) and "$lte" in condition:
            view["guard"] = f"{fname} <= {plain(condition['$lte'])}"
    return _mapping(view)


def dynamo_view(
    key: dict[str, Any], item: dict[str, Any] | None, version_field: str | None
) -> dict[str, Any]:
    """A DynamoDB put or delete as a plain mapping (see the module doc)."""
    if item is None:
        return _mapping({"op": "delete", "key": key})
    view: dict[str, Any] = {"op": "put", "key": key, "item": item}
    if version_field is not None and item.get(version_field) is not None:
        view["guard"] = f"{version_field} <= {plain(item[version_field])}"
    return _mapping(view)
