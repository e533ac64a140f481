"""Run a generated case in process: the worker's stage code over simulated topics, then the real
sink writers against the local stack's FerretDB and moto (DynamoDB).

What is simulated is Kafka only: partitions (murmur2, as the producers and the worker place
records), each processor reading its input partitions in a random interleaving and in random
batch sizes, outputs appended in order. With ``replays``, a stateless processor (records
stage, repartition) now and then reads part of a batch again after processing it, as after a
crash before its offsets were committed: its outputs for those records go out a second time,
at new offsets, and everything downstream must not count them twice. The processors are those
``streams.app.build_worker`` wires (repartitions included, as ``headrace.config.keys``
decides), and the sinks are the writers ``connectors.build`` builds, given the topic's key
fields. A case runs in tens of milliseconds, so thousands of cases fit in minutes;
``stackrun`` runs cases for real.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from streamcase import Case, Order

from connectors.dynamodb import DynamoDBSink, dynamo_client
from connectors.dynamodb_writer import DynamoWriter
from connectors.mongodb import MongoSink, mongo_collection
from connectors.mongodb_writer import MongoWriter
from connectors.records import SinkRecord
from headrace.config import Pipeline, Stage
from headrace.config.keys import key_fields, needs_repartition
from schemas import RecordCodec, encode_key
from streams.output_log import partition_for
from streams.stages.aggregate import AggregateStage
from streams.stages.base import InMessage, OutMessage, StageProcessor
from streams.stages.rank import RankStage
from streams.stages.records import RecordsStage
from streams.stages.repartition import RepartitionStage

JSON = RecordCodec()


class Topic:
    """A topic in memory: partitions of messages, in offset order."""

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.parts: list[list[InMessage]] = [[] for _ in range(partitions)]

    def append(self, msg: OutMessage, rng: random.Random) -> None:
        n = len(self.parts)
        if msg.partition is not None:
            p = msg.partition
        elif msg.key is None:
            p = rng.randrange(n)  # librdkafka's murmur2_random: a random partition
        else:
            p = partition_for(msg.key, n)
        log = self.parts[p]
        log.append(
            InMessage(
                self.name,
                p,
                len(log),
                msg.key,
                msg.value,
                msg.timestamp_ms or 0,
                tuple(msg.headers),
            )
        )


class _OutputLog:
    def __init__(self, topic: Topic) -> None:
        self.topic = topic

    def partition(self, key: bytes) -> int:
        return partition_for(key, len(self.topic.parts))

    def start(self, partition: int) -> int:
        return len(self.topic.parts[partition])

    def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
        return {(m.key, m.value) for m in self.topic.parts[partition][start:]}


@dataclass
class Loop:
    processor: StageProcessor
    source: str
    read: dict[int, int] = field(default_factory=dict)


class Simulation:
    """The stage loops of ``pipeline`` over in-memory topics of ``partitions`` each."""

    def __init__(
        self, pipeline: Pipeline, partitions: int, rng: random.Random, *, replays: bool = False
    ) -> None:
        self.rng = rng
        self.partitions = partitions
        self.replays = replays
        self.replayed = 0  # input records read again
        self.topics: dict[str, Topic] = {}
        self.loops: list[Loop] = []
        keys = key_fields(pipeline)
        for name, stage in pipeline.stages.items():
            self._wire(name, stage, keys)

    def topic(self, name: str) -> Topic:
        if name not in self.topics:
            self.topics[name] = Topic(name, self.partitions)
        return self.topics[name]

    def _wire(self, name: str, stage: Stage, keys: dict[str, Any]) -> None:
        self.topic(stage.from_)
        if stage.aggregate is not None:
            source = stage.from_
            if needs_repartition(stage, keys.get(stage.from_)):
                source = f"{name}-by-group"
                part = RepartitionStage(
                    name, stage, target=source, partitions=self.partitions, purpose="aggregate"
                )
                self.loops.append(Loop(part, stage.from_))
            agg = AggregateStage(name, stage, output=_OutputLog(self.topic(stage.to)))
            agg.source = source
            self.loops.append(Loop(agg, source))
        elif stage.rank is not None:
            source = f"{name}-by-partition"
            part = RepartitionStage(name, stage, target=source, partitions=self.partitions)
            self.loops.append(Loop(part, stage.from_))
            rank = RankStage(name, stage, key_fields=keys.get(stage.to))
            rank.source = source
            self.loops.append(Loop(rank, source))
        else:
            records = RecordsStage(name, stage, out_partitions=self.partitions)
            self.loops.append(Loop(records, stage.from_))

    def run(self) -> None:
        """Process until no loop has unread input, in a random interleaving."""
        while True:
            pending = [
                (loop, p)
                for loop in self.loops
                for p, log in enumerate(self.topic(loop.source).parts)
                if loop.read.get(p, 0) < len(log)
            ]
            if not pending:
                return
            loop, p = self.rng.choice(pending)
            log = self.topic(loop.source).parts[p]
            start = loop.read.get(p, 0)
            end = min(len(log), start + self.rng.randint(1, 40))
            loop.read[p] = end
            out = loop.processor.process(p, log[start:end], 0)
            for msg in out.messages + out.dead:
                self.topic(msg.topic).append(msg, self.rng)
            stateless = isinstance(loop.processor, RecordsStage | RepartitionStage)
            if self.replays and stateless and self.rng.random() < 0.15:
                # "crashed" before committing: the next read starts inside this batch again
                loop.read[p] = self.rng.randint(start, end - 1)
                self.replayed += end - loop.read[p]


def produce(topic: Topic, orders: list[Order], rng: random.Random) -> None:
    for order in orders:
        key = None if order.key_value is None else encode_key(order.key_value)
        value = None if order.value is None else orjson.dumps(order.value)
        topic.append(OutMessage(topic.name, key, value, order.ts), rng)


def aggregate_partition(case: Case, pipeline: Pipeline, value: dict[str, Any]) -> int:
    """The partition of the aggregate's input that ``value`` lands in (for ``advance``)."""
    stage = next(s for s in pipeline.stages.values() if s.aggregate is not None)
    fields = key_fields(pipeline).get(stage.from_)
    if needs_repartition(stage, fields):
        return partition_for(encode_key([value.get(g) for g in case.group_by]), case.partitions)
    assert fields is not None
    return partition_for(encode_key([value[f] for f in fields]), case.partitions)


def advance(case: Case, pipeline: Pipeline) -> list[Order]:
    """One record per partition of the aggregate's input, a day after phase A: every window of
    phase A closes (their own windows never do)."""
    ts = max(o.ts for o in case.orders) + 24 * 3_600_000
    found: dict[int, Order] = {}
    for j in range(10_000):
        value = {
            "order_id": 900_000 + j,
            "customer_id": 5_000 + j,
            "region": f"adv{j}",
            "amount": "1.00",
            "qty": 1,
        }
        p = aggregate_partition(case, pipeline, value)
        if p not in found:
            key = [value[f] for f in case.input_key] if case.input_key else None
            found[p] = Order("adv", key, value, ts)
        if len(found) == case.partitions:
            break
    return [found[p] for p in sorted(found)]


def sink_records(topic: Topic, rng: random.Random) -> list[SinkRecord]:
    """The topic's messages as a sink reads them: partitions interleaved, each in order."""
    cursors = [0] * len(topic.parts)
    out: list[SinkRecord] = []
    while True:
        left = [p for p, log in enumerate(topic.parts) if cursors[p] < len(log)]
        if not left:
            return out
        p = rng.choice(left)
        end = min(len(topic.parts[p]), cursors[p] + rng.randint(1, 30))
        for m in topic.parts[p][cursors[p] : end]:
            out.append(
                SinkRecord(
                    m.topic, p, m.offset, m.key, JSON.decode_value(m.value), m.value, m.timestamp_ms
                )
            )
        cursors[p] = end


def write_sink(
    name: str,
    pipeline: Pipeline,
    records: list[SinkRecord],
    rng: random.Random,
    *,
    replays: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write ``records`` with sink ``name``'s writer in random batches; (what the store holds,
    the writer's rejections). The store is emptied before and removed after. ``replays``: now
    and then part of a batch is written again, as by a sink restarted before its commit."""
    config = pipeline.sinks[name]
    fields = key_fields(pipeline).get(config.from_)
    rejected: list[str] = []
    if isinstance(config, MongoSink):
        client, coll = mongo_collection(config)
        try:
            coll.drop()
            writer = MongoWriter(name, config, coll, key_fields=fields)
            _write_all(writer, records, rng, rejected, replays)
        finally:
            client.close()
    else:
        assert isinstance(config, DynamoDBSink)
        writer_d = DynamoWriter(name, config, dynamo_client(config), key_fields=fields)
        writer_d.open()
        try:
            _write_all(writer_d, records, rng, rejected, replays)
        finally:
            writer_d.close()
    return read_store(pipeline, name, drop=True), rejected


def read_store(pipeline: Pipeline, name: str, *, drop: bool) -> list[dict[str, Any]]:
    """What sink ``name``'s collection or table holds (MongoDB: without ``_id``); ``drop``
    removes the collection or table after reading."""
    config = pipeline.sinks[name]
    if isinstance(config, MongoSink):
        client, coll = mongo_collection(config)
        try:
            docs = list(coll.find())
            if drop:
                coll.drop()
        finally:
            client.close()
        for d in docs:
            d.pop("_id", None)
        return docs
    assert isinstance(config, DynamoDBSink)
    dynamo = dynamo_client(config)
    items = _scan(dynamo, config.table)
    if drop:
        dynamo.delete_table(TableName=config.table)
    return items


def _write_all(
    writer: Any,
    records: list[SinkRecord],
    rng: random.Random,
    rejected: list[str],
    replays: bool,
) -> None:
    i = 0
    while i < len(records):
        batch = records[i : i + rng.randint(1, 50)]
        outcome = writer.write(batch)
        rejected.extend(f"{batch[k].key!r}: {why}" for k, why in outcome.rejected.items())
        i += len(batch)
        if replays and rng.random() < 0.15:  # crashed before committing: write part again
            i = rng.randint(i - len(batch), i - 1)


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


__all__ = ["Simulation", "advance", "produce", "read_store", "sink_records", "write_sink"]
