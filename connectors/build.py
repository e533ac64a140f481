"""Wiring one sink from the pipeline file: consumer, writer, dead letters, metrics, runner.

``build_sink(pipeline, name)`` returns a ready ``SinkRunner`` plus a ``close`` callable for
the clients it opened. The consumer group defaults to ``headrace.<pipeline>.sink.<name>``,
so copies of one sink share the topic's partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.records import SinkWriter
from connectors.runner import SinkRunner
from connectors.sinkmetrics import SinkMetrics
from headrace.config import Pipeline
from headrace.config.keys import KeyFields, key_fields
from headrace.dlq import dlq_topic
from headrace.errors import ConfigError
from headrace.kafka_clients import ensure_topics, make_consumer, make_producer
from headrace.plugins import require, sink_plugin
from schemas import RecordCodec

__all__ = ["SinkContext", "build_sink", "group_id"]


@dataclass
class SinkContext:
    """What a sink connector's ``build`` gets besides its config: the key fields of the topic
    it reads (``headrace.config.keys``: a tombstone's key names them), a callback counting
    throttled requests, and ``closers``, where it adds what ``close`` must release."""

    key_fields: KeyFields = None
    on_throttle: Callable[[], None] = lambda: None
    closers: list[Callable[[], None]] = field(default_factory=list)


def group_id(pipeline: Pipeline, name: str) -> str:
    """The default consumer group of sink ``name``."""
    return f"headrace.{pipeline.name}.sink.{name}"


def build_sink(
    pipeline: Pipeline, name: str, *, group: str | None = None
) -> tuple[SinkRunner, Callable[[], None]]:
    """The runner of sink ``name``; ConfigError (exit 2) when there is no such sink."""
    config = pipeline.sinks.get(name)
    if config is None:
        known = ", ".join(sorted(pipeline.sinks)) or "none"
        raise ConfigError(f"no sink named {name!r} in the pipeline file (sinks: {known})")
    metrics = SinkMetrics(pipeline.name, name)
    plugin = sink_plugin(config.type)
    require(plugin, f"sink {name!r}")
    context = SinkContext(
        key_fields=key_fields(pipeline).get(config.from_), on_throttle=metrics.throttle
    )
    writer: SinkWriter = plugin.build(name, config, context)
    closers = context.closers
    delivery: list[Callable[[Any, Any], None]] = []
    producer: Any = make_producer(
        pipeline.kafka, on_delivery=lambda err, msg: [cb(err, msg) for cb in delivery]
    )
    holder: list[SinkRunner] = []
    consumer: Any = make_consumer(
        pipeline.kafka,
        group or group_id(pipeline, name),
        defaults={"statistics.interval.ms": 5000},  # the lag gauge's period (kafka.client wins)
        stats_cb=lambda s: holder[0].on_stats(s),
    )
    runner = SinkRunner(
        name=name,
        topic=config.from_,
        consumer=consumer,
        writer=writer,
        producer=producer,
        metrics=metrics,
        batch_size=config.batch_size,
        batch_bytes=config.batch_bytes,
        linger=config.linger,
        ensure_dlq_topic=lambda: _ensure_dlq(pipeline, config.from_),
        codec=RecordCodec(pipeline.schema_registry()),
    )
    holder.append(runner)
    delivery.append(runner.on_delivery)

    def close() -> None:
        producer.flush(10)
        for fn in closers:
            fn()

    return runner, close


def _ensure_dlq(pipeline: Pipeline, topic: str) -> None:
    ensure_topics(pipeline.kafka, {dlq_topic(topic): 1})
