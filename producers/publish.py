"""``headrace publish``: ad-hoc records from a JSONL or CSV stream into a topic, with the same
encoding, validation and dead-letter rules as the sources (no checkpoint: a one-shot)."""

from __future__ import annotations

from collections.abc import Generator
from typing import IO, TYPE_CHECKING, Any

from headrace.dlq import dlq_topic
from headrace.kafka_clients import ensure_topics, producer_config
from producers.batch import Batch, ObjectRows
from producers.encoder import RecordEncoder, codec_for
from producers.runner import DeliveryReports, Progress, Runner, delivery_settings
from producers.s3_formats import parse

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["StreamSource", "publish"]


class StreamSource:
    """One pass over a byte stream in ``jsonl`` or ``csv``; positions name ``label`` + line."""

    unit = "records"

    def __init__(self, stream: IO[bytes], fmt: str, label: str, batch: int = 5000) -> None:
        self.name = "publish"
        self.stream = stream
        self.fmt = fmt
        self.label = label
        self.batch = batch

    def restore(self, state: dict[str, Any] | None) -> None:
        """Nothing to resume: publish is a one-shot."""

    def close(self) -> None:
        """The caller owns the stream."""

    def batches(self) -> Generator[Batch, None, None]:
        rows = ObjectRows()
        for chunk in parse(self.stream, self.fmt, key=self.label, etag="", gzipped=False):
            rows.add(self.label, "", chunk.values, chunk.raws, chunk.lines, chunk.poison)
            if len(rows) >= self.batch:
                records, poison = rows.take()
                yield Batch(records, {}, poison)
        if len(rows):
            records, poison = rows.take()
            yield Batch(records, {}, poison)


def publish(
    pipeline: Pipeline,
    topic: str,
    stream: IO[bytes],
    *,
    fmt: str = "jsonl",
    key: str | None = None,
    schema: str | None = None,
    label: str = "-",
) -> Progress:
    """Publish every record of ``stream`` to ``topic`` (poison to ``<topic>.dlq``); return
    the counters once the broker acknowledged everything."""
    from confluent_kafka import Producer

    codec = codec_for(pipeline, schema, "avro" if schema else "json", topic)
    encoder = RecordEncoder(codec, [key] if key else None)
    ensure_topics(pipeline.kafka, {topic: 3, dlq_topic(topic): 1})
    reports = DeliveryReports()
    runner = Runner(
        pipeline=pipeline.name,
        source=StreamSource(stream, fmt, label),
        topic=topic,
        encoder=encoder,
        producer=Producer(producer_config(pipeline.kafka, **delivery_settings(reports))),
        store=None,
        reports=reports,
    )
    return runner.run(once=True, poll_interval=0)
