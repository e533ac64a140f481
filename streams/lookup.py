"""Lookup join state: the latest value per key of a topic, kept in a changelog-backed table.

``LookupRunner`` reads ``lookup.table_from`` through its own ``BatchTopic`` (raw bytes) and
keeps ``message key bytes -> decoded value`` (a tombstone deletes) in the table
``<stage>-lookup``, written once per batch. ``get(key bytes)`` is what the stage's
``RecordsStage`` calls; the key bytes are ``schemas.encode_key`` of the ``on`` fields, the
same bytes a headrace source writes as the message key.
"""

from __future__ import annotations

from typing import Any, cast

import faust
import orjson
from faust.types import TP

from headrace.config import Lookup
from streams import table_store
from streams.batch_topic import BatchBuffer, BatchTopic
from streams.consumer import BatchApp, BatchConsumer

__all__ = ["LookupRunner"]


class LookupRunner:
    """See the module doc."""

    def __init__(self, app: BatchApp, topic: BatchTopic, table: Any, within: float) -> None:
        self.app = app
        self.topic = topic
        self.table = table
        self.within = within

    @classmethod
    def create(
        cls, app: BatchApp, stage: str, spec: Lookup, *, partitions: int, within: float = 0.2
    ) -> LookupRunner:
        """The runner for ``stage``'s lookup (another reader of ``spec.table_from``)."""
        buffer = BatchBuffer(maxsize=20_000, batch_size=5_000)
        app.add_reader(spec.table_from, buffer)
        topic = BatchTopic(
            app,
            topics=[spec.table_from],
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
            buffer=buffer,
        )
        app.topics.add(topic)
        table = app.Table(
            f"{stage}-lookup",
            default=None,
            partitions=partitions,
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
        )
        return cls(app, topic, table, within)

    def get(self, key: bytes) -> dict[str, Any] | None:
        raw = self.table.data.get(key.decode(errors="replace"))
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

    async def run(self) -> None:
        """Apply each batch to the table (changelog first), then ack its offsets."""
        buffer = self.topic.buffer
        while True:
            records = await buffer.take(self.within)
            try:
                if records:
                    await self._apply(records)
            finally:
                buffer.done()

    async def _apply(self, records: list[Any]) -> None:
        offsets: dict[int, list[int]] = {}
        entries: dict[int, list[tuple[str, str | None]]] = {}
        for r in records:
            offsets.setdefault(r.partition, []).append(r.offset)
            if r.key is None:
                continue
            # text keys/values: what Faust's recovery gives back (see streams.runner)
            key = bytes(r.key).decode(errors="replace")
            value = None if r.value is None else bytes(r.value).decode(errors="replace")
            self.table.send_changelog(r.partition, key, value)
            entries.setdefault(r.partition, []).append((key, value))
        for partition, written in entries.items():
            table_store.write(self.table, partition, written)
        await self.app.producer.flush()
        consumer = cast(BatchConsumer, self.app.consumer)
        for partition, done in offsets.items():
            consumer.ack_offsets(TP(self.topic.get_topic_name(), partition), done)
