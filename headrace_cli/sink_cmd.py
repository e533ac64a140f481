"""``headrace sink NAME``: run one sink (any registered type) as a long-lived process.

Several copies of one sink share the topic's partitions (one consumer group). SIGTERM and
SIGINT flush the batch in hand, commit and leave the group; exit 0. A fatal sink error
(credentials, missing table) exits 1; bad configuration or an unknown sink exits 2. A sink
whose batch in hand has not been committed for ``watchdog.exit_after`` (a write or commit that
never returns, a database down for that long) exits 1 naming it (``headrace.watchdog``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from headrace_cli.common import add_file_option, pipeline_path

__all__ = ["COMMANDS", "register"]

COMMANDS = ("sink",)

log = logging.getLogger("headrace.sink")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from headrace.plugins import sink_plugins

    types = ", ".join(sink_plugins())
    p = sub.add_parser(
        "sink",
        help=f"run one sink ({types}) as a long-lived process",
        description=(
            "Consume the sink's topic, write batches to its store idempotently, and "
            "commit offsets only after each batch is written. Bad records go to <topic>.dlq. "
            "Run several copies to share the partitions. SIGTERM: flush, commit, exit 0. "
            f"Sink types: {types} (plugins add theirs)."
        ),
    )
    add_file_option(p)
    p.add_argument("name", metavar="NAME", help="the sink's name under sinks: in the file")
    p.add_argument(
        "--group", default=None, help="consumer group (default headrace.<pipeline>.sink.<NAME>)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of /metrics (default: the file's metrics.port; 0 or busy: a free port)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connectors.build import build_sink
    from headrace.config import load_pipeline
    from headrace.errors import WedgedError
    from headrace.host import host

    pipeline = load_pipeline(pipeline_path(args))
    runner, close = build_sink(pipeline, args.name, group=args.group)
    log.info("sink %r: reading %r", args.name, runner.topic)
    try:
        host(
            pipeline,
            kind="sink",
            name=args.name,
            run=runner.run,
            stop=runner.stop,
            close=close,
            metrics_port=args.metrics_port,
            stall=runner.stall,
            stuck="no batch committed",
        )
    except WedgedError as exc:
        # a thread is stuck inside librdkafka: a normal exit could wait on it at shutdown
        print(f"headrace sink: {exc}", file=sys.stderr, flush=True)
        os._exit(exc.exit_code)
    log.info("sink %r: stopped; committed %s", args.name, runner.committed)
    return 0
