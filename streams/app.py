"""The Faust app built from a pipeline file: one stage loop per stage, tables, health, metrics.

``build_worker(pipeline, options)`` returns the ``faust.App`` and its ``StageRunner``s:

- every stage reads its ``from`` topic through a ``BatchTopic``: raw aiokafka records handed
  over a fetched batch at a time by ``streams.consumer.BatchConsumer`` (no per-message task or
  event; stages reading the same topic each get every record, and an offset is committed once
  all of them acked it); each stage runs in its own asyncio task: concurrency 1 per stage,
  input offsets acked only after the batch's output is acknowledged (see ``streams.runner``);
- an ``aggregate`` whose input is not keyed by (a subset of) its ``group_by``, and every
  ``rank``, first re-key their input through an internal topic (``<app id>-<stage>-by-group``,
  ``-by-partition``; ``streams.stages.repartition``; ``headrace.config.keys`` decides);
- ``aggregate`` and ``rank`` stages keep state in a Faust table with a changelog topic
  (``<app id>-<stage>-state``), partitioned like the input; ``store`` picks the table store
  (``rocksdb://``, the default: local RocksDB databases in the datadir through the
  ``rocksdict`` driver, the changelog replayed only past the offset they hold; ``memory://``:
  state rebuilt from the whole changelog at each start; writes go through
  ``streams.table_store``, stale local stores are dropped by ``streams.datadir``);
  an ``aggregate`` stage also gets a ``KafkaOutputLog`` of its output topic (where each window
  lands, read back on restore so a window is never emitted twice);
- a ``lookup`` keeps the latest value per key of ``table_from`` in a table; its topic must have
  as many partitions as the stage's input (checked at start: ``ConfigError``);
- outputs, dead letters (``<from>.dlq``) and overflow (``<from>.overflow``) topics are created
  at start with the input's partition count, in stage order (so chained stages agree);
- a worker's share of a stage-wide rate limit follows its share of the input partitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faust
from confluent_kafka.admin import AdminClient
from faust.types import TP

from headrace.config import Pipeline, Stage
from headrace.config.keys import key_fields, needs_repartition
from headrace.errors import ConfigError
from headrace.kafka_clients import client_config, ensure_topics, make_producer
from schemas import RecordCodec
from streams.batch_topic import BatchBuffer, BatchTopic
from streams.consumer import BatchApp
from streams.datadir import drop_stale_stores, worker_data_dir
from streams.health import Health
from streams.kafka_auth import faust_credentials
from streams.lookup import LookupRunner
from streams.output_log import KafkaOutputLog
from streams.runner import StageRunner
from streams.stages import AggregateStage, RankStage, RecordsStage, StageProcessor
from streams.stages.repartition import RepartitionStage

__all__ = ["WorkerOptions", "build_worker", "stage_loop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker runs (not what it computes: that is the pipeline file)."""

    app_id: str | None = None
    store: str = "rocksdb://"  # or memory:// (see the module doc)
    web_port: int = 6066
    batch_size: int = 5000
    within: float = 0.2
    idle_ms: int = 5000
    stall_after: float | None = None  # None: the file's watchdog.unhealthy_after
    recovery_timeout: float = 600.0
    stages: tuple[str, ...] = ()  # empty: every stage
    schemas_dir: Path | None = None
    data_dir: Path | None = None  # base folder of the worker's datadir (streams.datadir)
    #: windows close by the idle timer only once this file exists (``headrace run
    #: --until-idle`` creates it when the input is complete); None: the timer always runs
    input_done_file: Path | None = None


def _partitions(admin: AdminClient, topic: str) -> int | None:
    meta = admin.list_topics(topic=topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return None
    return len(meta.partitions)


def _prepare_topics(pipeline: Pipeline, stages: dict[str, Stage]) -> dict[str, int]:
    """Create outputs/DLQ/overflow topics; return partitions per input topic."""
    admin = AdminClient(client_config(pipeline.kafka))
    counts: dict[str, int] = {}
    for name, stage in stages.items():
        n = counts.get(stage.from_) or _partitions(admin, stage.from_)
        if n is None:
            raise ConfigError(
                f"stage {name!r}: input topic {stage.from_!r} does not exist; create it or "
                "start the source that writes it first"
            )
        counts[stage.from_] = n
        wanted = {stage.to: n, stage.from_ + ".dlq": n}
        if stage.rate_limit is not None and stage.rate_limit.on_excess == "shed":
            wanted[stage.from_ + ".overflow"] = n
        ensure_topics(pipeline.kafka, wanted)
        counts.setdefault(stage.to, _partitions(admin, stage.to) or n)
        if stage.lookup is not None:
            m = _partitions(admin, stage.lookup.table_from)
            if m != n:
                raise ConfigError(
                    f"stage {name!r}: lookup topic {stage.lookup.table_from!r} has "
                    f"{m if m is not None else 'no'} partitions but {stage.from_!r} has {n}; "
                    "they must be co-partitioned (same partition count and key) for the join"
                )
    return counts


def build_worker(pipeline: Pipeline, options: WorkerOptions) -> tuple[BatchApp, list[StageRunner]]:
    """The app and its stage loops (not started); ConfigError for an unusable pipeline."""
    chosen = options.stages or tuple(pipeline.stages)
    unknown = [s for s in chosen if s not in pipeline.stages]
    if unknown:
        raise ConfigError(
            f"unknown stage(s) {', '.join(unknown)}; the file has {', '.join(pipeline.stages)}"
        )
    stages = {n: pipeline.stages[n] for n in pipeline.stages if n in chosen}
    keys = key_fields(pipeline)
    codec = RecordCodec(pipeline.schema_registry())  # Avro inputs decode by schema id
    counts = _prepare_topics(pipeline, stages)
    app_id = options.app_id or f"headrace-{pipeline.name}"
    app = BatchApp(
        app_id,
        broker=f"kafka://{pipeline.kafka.bootstrap_servers}",
        store=options.store,
        datadir=str(worker_data_dir(app_id, options.data_dir)),
        web_port=options.web_port,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=10_000,
        topic_disable_leader=True,
        **faust_credentials(pipeline.kafka),
    )
    # a short linger keeps the stages' latency low; kafka.client may set another
    producer = make_producer(pipeline.kafka, defaults={"linger.ms": 5})
    # stateless stages need to hear only of failed deliveries (see StageRunner)
    stateless_producer = make_producer(
        pipeline.kafka, defaults={"linger.ms": 5}, **{"delivery.report.only.error": True}
    )
    runners: list[StageRunner] = []
    lookups: list[LookupRunner] = []

    def repartition(name: str, stage: Stage, internal: str, n: int, topic: BatchTopic) -> Any:
        """Add the loop re-keying ``topic`` into ``internal``; the topic the stage reads."""
        runners.append(
            _repartition(
                app, pipeline, name, stage, internal, n, topic, stateless_producer, options.within
            )
        )
        counts[internal] = n
        return _batch_topic(app, internal, options)

    for name, stage in stages.items():
        n = counts[stage.from_]
        topic = _batch_topic(app, stage.from_, options)
        table = None
        output_log = None
        processor: StageProcessor
        if stage.kind == "records":
            lookup_get = None
            if stage.lookup is not None:
                lookup = LookupRunner.create(app, name, stage.lookup, partitions=n)
                lookups.append(lookup)
                lookup_get = lookup.get
            processor = RecordsStage(
                name,
                stage,
                schemas_dir=options.schemas_dir,
                lookup=lookup_get,
                out_partitions=counts.get(stage.to),
            )
        elif stage.kind == "aggregate":
            internal = None
            if needs_repartition(stage, keys.get(stage.from_)):
                internal = f"{app_id}-{name}-by-group"
                topic = repartition(name, stage, internal, n, topic)
            table = _state_table(app, name, n)
            output_log = KafkaOutputLog(pipeline.kafka, stage.to, counts[stage.to])
            done = options.input_done_file
            processor = AggregateStage(
                name,
                stage,
                output=output_log,
                idle_ms=options.idle_ms,
                idle_gate=None if done is None else done.exists,
            )
            processor.source = internal or stage.from_
        else:
            internal = f"{app_id}-{name}-by-partition"
            topic = repartition(name, stage, internal, n, topic)
            table = _state_table(app, name, n)
            processor = RankStage(name, stage, key_fields=keys.get(stage.to))
            processor.source = internal
        runners.append(
            StageRunner(
                app=app,
                processor=processor,
                topic=topic,
                table=table,
                producer=stateless_producer if table is None and output_log is None else producer,
                labels=(pipeline.name, name),
                within=options.within,
                output_log=output_log,
            )
        )
    for runner in runners:  # one codec, the pipeline's registry (no process-wide state)
        runner.processor.codec = codec
    health = Health(
        app,
        runners,
        pipeline.name,
        stall_after=(
            pipeline.watchdog.unhealthy_after
            if options.stall_after is None
            else options.stall_after
        ),
        recovery_timeout=options.recovery_timeout,
        exit_after=pipeline.watchdog.exit_after,
        grace=pipeline.watchdog.grace,
    )
    admin = AdminClient(client_config(pipeline.kafka))
    drop_stale_stores(app.tables.values(), set(admin.list_topics(timeout=30).topics))
    _wire(app, runners, lookups, counts, health)
    health.install()
    return app, runners


def _repartition(
    app: BatchApp,
    pipeline: Pipeline,
    name: str,
    stage: Stage,
    internal: str,
    partitions: int,
    topic: BatchTopic,
    producer: Any,
    within: float,
) -> StageRunner:
    """The loop that re-keys ``stage``'s input (``topic``) into the internal topic
    ``internal``, created here (``streams.stages.repartition``)."""
    ensure_topics(pipeline.kafka, {internal: partitions})
    purpose: Literal["rank", "aggregate"] = "rank" if stage.rank is not None else "aggregate"
    processor = RepartitionStage(
        name, stage, target=internal, partitions=partitions, purpose=purpose
    )
    return StageRunner(
        app=app,
        processor=processor,
        topic=topic,
        table=None,
        producer=producer,
        labels=(pipeline.name, name),
        within=within,
    )


def _batch_topic(app: BatchApp, name: str, options: WorkerOptions) -> BatchTopic:
    buffer = BatchBuffer(maxsize=options.batch_size * 4, batch_size=options.batch_size)
    app.add_reader(name, buffer)
    topic = BatchTopic(
        app, topics=[name], key_serializer="raw", value_serializer="raw", buffer=buffer
    )
    app.topics.add(topic)
    return topic


def _state_table(app: faust.App, stage: str, partitions: int) -> Any:
    return app.Table(
        f"{stage}-state",
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
    )


def _wire(
    app: faust.App,
    runners: list[StageRunner],
    lookups: list[LookupRunner],
    counts: dict[str, int],
    health: Health,
) -> None:
    for runner in runners:
        app.task(stage_loop(runner.run, runner.labels[1], health))
    for lookup in lookups:
        app.task(stage_loop(lookup.run, f"{lookup.table.name} (lookup)", health))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: Any, revoked: Iterable[TP], **kwargs: Any) -> None:
        for runner in runners:
            runner.on_revoked(revoked)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: Any, assigned: Iterable[TP], **kwargs: Any) -> None:
        held = set(app.consumer.assignment())
        for runner in runners:
            processor = runner.processor
            if isinstance(processor, RecordsStage):
                source = processor.source
                mine = sum(1 for tp in held if tp.topic == source)
                processor.set_share(mine, counts[source])


def stage_loop(run: Callable[[], Awaitable[None]], name: str, health: Health) -> Any:
    """The app task running ``run``. A loop that raises is logged at ERROR and listed in
    ``health.dead`` (so /healthz answers 503 at once and ``headrace_healthy`` is 0 from the
    next watchdog round, instead of the input silently piling up), then the error goes on to
    Faust."""

    async def loop() -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stage loop %r died; the worker is unhealthy", name)
            health.dead.append(name)
            raise

    loop.__name__ = f"stage_{name}"
    return loop
