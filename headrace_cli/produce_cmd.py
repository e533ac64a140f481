"""``headrace produce NAME [--once] [--reset]`` and ``headrace publish TOPIC [FILE|-]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from headrace.errors import ConfigError
from headrace_cli.common import add_file_option, pipeline_path

__all__ = ["COMMANDS", "describe_checkpoint", "register"]

COMMANDS = ("produce", "publish")
#: exit code of a ``--once`` run stopped by a signal before it read its source to the end
#: (128 + SIGTERM, as a shell reports it): not done, run it again
STOPPED_EARLY = 143

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from headrace.plugins import source_plugins

    types = ", ".join(source_plugins())
    produce = sub.add_parser(
        "produce",
        help=f"run one source ({types}) into Kafka as a long-lived process",
        description=(
            "Run source NAME of the pipeline file: poll it, produce its records, and store "
            "its position in Kafka after they are acknowledged. SIGTERM flushes, stores the "
            f"position and exits 0. Source types: {types} (plugins add theirs)."
        ),
    )
    add_file_option(produce)
    produce.add_argument("name", metavar="NAME", help="source name (under sources:)")
    produce.add_argument(
        "--once",
        action="store_true",
        help="ingest what is there now, then exit 0 (143 when SIGTERM/SIGINT stopped it first)",
    )
    produce.add_argument(
        "--reset",
        action="store_true",
        help="discard the stored position first (says what it discards) and start over",
    )
    produce.set_defaults(func=_produce)

    pub = sub.add_parser(
        "publish",
        help="publish ad-hoc records (JSONL or CSV) to a topic",
        description=(
            "Publish records from FILE (or stdin) to TOPIC with the sources' rules: "
            "one message per record, bad lines to TOPIC.dlq."
        ),
    )
    add_file_option(pub)
    pub.add_argument("topic", metavar="TOPIC")
    pub.add_argument("input", metavar="FILE", nargs="?", default="-", help="file or - (stdin)")
    pub.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    pub.add_argument("--key", metavar="FIELD", help="record field used as the message key")
    pub.add_argument("--schema", metavar="NAME", help="Avro schema (<schemas.dir>/NAME.avsc)")
    pub.set_defaults(func=_publish)


def describe_checkpoint(state: dict[str, Any] | None) -> str:
    """One line saying what a stored state holds (used before a reset)."""
    if not state:
        return "no stored position"
    if "done" in state or "finished" in state:  # an S3 source (old or current format)
        from producers.s3_state import S3State

        return S3State.from_state(state).describe()
    return f"mode {state.get('mode')}, timestamp {state.get('ts')}, id {state.get('id')}"


def _produce(args: argparse.Namespace) -> int:
    from headrace.config import load_pipeline
    from headrace.host import host
    from headrace.kafka_clients import make_producer
    from producers.build import build_runner, source_config
    from producers.progress import ProgressDisplay

    pipeline = load_pipeline(pipeline_path(args))
    cfg = source_config(pipeline, args.name)
    display = ProgressDisplay(args.name, "objects" if cfg.type == "s3" else "rows")
    runner, poll_interval = build_runner(pipeline, args.name, on_progress=display)
    if args.reset:
        state = runner.store.load() if runner.store else None
        print(
            f"headrace produce: --reset discards the position of source {args.name!r} "
            f"({describe_checkpoint(state)}) in topic "
            f"{runner.store.topic if runner.store else '?'}; starting over",
            file=sys.stderr,
        )
        if runner.store is not None:
            p = make_producer(pipeline.kafka)
            runner.store.reset(p)
    progress = host(
        pipeline,
        kind="source",
        name=args.name,
        run=lambda: runner.run(once=args.once, poll_interval=poll_interval),
        stop=runner.stop,
        stall=runner.stall,  # the stall watchdog (headrace.watchdog)
        stuck="no batch produced or acknowledged",
    )
    display.done(progress)
    if args.once and runner.interrupted:
        # a supervisor treats exit 0 of a --once run as "everything ingested": a stop that
        # came first must not look like that (headrace run restarts a source that exits 143)
        print(
            f"headrace produce: source {args.name!r} was stopped before it ingested everything "
            "(its position is stored); exiting 143 so a supervisor runs it again",
            file=sys.stderr,
        )
        return STOPPED_EARLY
    return 0


def _publish(args: argparse.Namespace) -> int:
    from headrace.config import load_pipeline
    from producers.publish import publish

    pipeline = load_pipeline(pipeline_path(args))
    if args.input == "-":
        progress = publish(
            pipeline,
            args.topic,
            sys.stdin.buffer,
            fmt=args.format,
            key=args.key,
            schema=args.schema,
            label="stdin",
        )
    else:
        path = Path(args.input)
        if not path.is_file():
            raise ConfigError(f"input file {path} does not exist; give a file or - for stdin")
        with path.open("rb") as fh:
            progress = publish(
                pipeline,
                args.topic,
                fh,
                fmt=args.format,
                key=args.key,
                schema=args.schema,
                label=path.name,
            )
    print(
        f"published {progress.records} records to {args.topic}, "
        f"{progress.dead_letters} to {args.topic}.dlq"
    )
    return 0
