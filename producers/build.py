"""Wire one configured source into a ready ``Runner``: the source and its encoder (built by
its connector, ``headrace.plugins``), topics, checkpoints, the producer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headrace.checkpoints import CheckpointStore
from headrace.dlq import dlq_topic
from headrace.errors import ConfigError
from headrace.kafka_clients import client_config, ensure_topics, producer_config
from headrace.plugins import require, source_plugin
from producers.runner import DeliveryReports, Progress, Runner, delivery_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from headrace.config import Pipeline, SourceBase

__all__ = ["DEFAULT_PARTITIONS", "build_runner", "source_config"]

DEFAULT_PARTITIONS = 3


def source_config(pipeline: Pipeline, name: str) -> SourceBase:
    """The source called ``name``; ConfigError listing the configured ones."""
    if name not in pipeline.sources:
        names = ", ".join(sorted(pipeline.sources)) or "none"
        raise ConfigError(f"no source named {name!r} in the pipeline (sources: {names})")
    config: SourceBase = pipeline.sources[name]
    return config


def build_runner(
    pipeline: Pipeline,
    name: str,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    checkpoint_interval: float = 1.0,
) -> tuple[Runner, float]:
    """(runner, poll interval) for source ``name``; creates its topic (3 partitions), the
    dead-letter topic and the checkpoint topic when missing."""
    from confluent_kafka import Producer

    cfg = source_config(pipeline, name)
    plugin = source_plugin(cfg.type)
    require(plugin, f"source {name!r}")
    source, encoder = plugin.build(pipeline, name, cfg)
    ensure_topics(pipeline.kafka, {cfg.topic: DEFAULT_PARTITIONS, dlq_topic(cfg.topic): 1})
    store = CheckpointStore(client_config(pipeline.kafka), pipeline.name, name)
    reports = DeliveryReports()
    overrides: dict[str, Any] = delivery_settings(reports)
    if cfg.exactly_once:
        overrides["transactional.id"] = f"headrace.{pipeline.name}.{name}"
    producer = Producer(producer_config(pipeline.kafka, **overrides))
    runner = Runner(
        pipeline=pipeline.name,
        source=source,
        topic=cfg.topic,
        encoder=encoder,
        producer=producer,
        store=store,
        reports=reports,
        exactly_once=cfg.exactly_once,
        checkpoint_interval=checkpoint_interval,
        on_progress=on_progress,
    )
    return runner, cfg.poll_interval
