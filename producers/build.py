"""Wire one configured source into a ready ``Runner``: client, codec, topics, checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headrace.checkpoints import CheckpointStore
from headrace.dlq import dlq_topic
from headrace.errors import ConfigError
from headrace.kafka_clients import client_config, ensure_topics, producer_config
from producers.encoder import RecordEncoder, make_codec
from producers.mysql_source import MySQLRowSource, make_engine
from producers.projection import Projection
from producers.runner import DeliveryReports, Progress, Runner, delivery_settings
from producers.s3_source import S3ObjectSource
from schemas import JsonCodec

if TYPE_CHECKING:
    from collections.abc import Callable

    from headrace.config import MySQLSource, Pipeline, S3Source

__all__ = ["DEFAULT_PARTITIONS", "build_runner", "make_s3_client", "source_config"]

DEFAULT_PARTITIONS = 3


def source_config(pipeline: Pipeline, name: str) -> MySQLSource | S3Source:
    """The source called ``name``; ConfigError listing the configured ones."""
    if name not in pipeline.sources:
        names = ", ".join(sorted(pipeline.sources)) or "none"
        raise ConfigError(f"no source named {name!r} in the pipeline (sources: {names})")
    return pipeline.sources[name]


def make_s3_client(cfg: S3Source) -> Any:
    """A boto3 S3 client for ``cfg`` with a connection pool sized for its concurrency."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "endpoint_url": cfg.endpoint_url,
        "region_name": cfg.region,
        "config": Config(
            max_pool_connections=cfg.concurrency + 4,
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    }
    if cfg.aws_access_key_id is not None and cfg.aws_secret_access_key is not None:
        kwargs["aws_access_key_id"] = cfg.aws_access_key_id
        kwargs["aws_secret_access_key"] = cfg.aws_secret_access_key.get_secret_value()
    return boto3.session.Session().client("s3", **kwargs)


def _mysql(name: str, cfg: MySQLSource) -> MySQLRowSource:
    required = [
        (k, getattr(cfg, k))
        for k in ("incrementing_column", "timestamp_column", "timestamp_field")
        if getattr(cfg, k)
    ]
    required += [("key", k) for k in cfg.key or ()]
    return MySQLRowSource(
        name,
        make_engine(cfg.url, name, decimals_as_text=cfg.output_format == "json"),
        mode=cfg.mode,
        table=cfg.table,
        query=cfg.query,
        incrementing_column=cfg.incrementing_column,
        timestamp_column=cfg.timestamp_column,
        timestamp_delay=cfg.timestamp_delay,
        batch_size=cfg.batch_size,
        required_columns=required,
        parse_json=cfg.output_format == "json",
        aware_datetimes=cfg.output_format != "json" or cfg.schema_ is not None,
    )


def _s3(
    name: str, cfg: S3Source, projection: Projection | None, encoder: RecordEncoder
) -> S3ObjectSource:
    return S3ObjectSource(
        name,
        make_s3_client(cfg),
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        glob=cfg.glob,
        file_format=cfg.file_format,
        gzipped=cfg.gzip,
        delimiter=cfg.delimiter,
        concurrency=cfg.concurrency,
        reingest_on_change=cfg.reingest_on_change,
        endpoint=cfg.endpoint_url,
        projection=projection,
        encoder=encoder,
    )


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

    from headrace.config import MySQLSource

    cfg = source_config(pipeline, name)
    codec = make_codec(pipeline, cfg)
    source: MySQLRowSource | S3ObjectSource
    if isinstance(cfg, MySQLSource):
        source = _mysql(name, cfg)
        if isinstance(codec, JsonCodec):
            codec = codec.as_naive_utc()  # the source's datetimes are UTC, left naive
        encoder = RecordEncoder(codec, cfg.key, cfg.timestamp_field)
    else:
        # lines sent as read (plain JSON): parse only the fields the key and event time need
        fields = [*(cfg.key or ()), *([cfg.timestamp_field] if cfg.timestamp_field else [])]
        plain = type(codec) is JsonCodec and cfg.file_format == "jsonl"
        encoder = RecordEncoder(codec, cfg.key, cfg.timestamp_field)
        # the reader threads encode the records too: the runner's thread only produces
        projection = Projection(fields, key=cfg.key, time=cfg.timestamp_field) if plain else None
        source = _s3(name, cfg, projection, encoder)
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
