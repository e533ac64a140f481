"""``headrace worker``: run the pipeline's stream stages (the Faust app) in this process.

Every stage of the pipeline file (or those named with ``--stage``) runs as one stage loop in
one Faust worker; more copies of the command share the input partitions (one consumer group
per pipeline, ``headrace-<pipeline name>`` unless ``--app-id``). SIGTERM stops gracefully:
the current batch finishes, offsets are committed, the worker leaves the group.

Table state (aggregate, rank, lookup) is kept in RocksDB in the worker's datadir by default
(``--store rocksdb://``): a restart replays only the changelog past what the local store
holds. ``--store memory://`` keeps it in memory and rebuilds it from the changelog at each
start. Several workers of one app on one machine need one ``--data-dir`` each.
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

from headrace_cli.common import add_file_option, pipeline_path

__all__ = ["COMMANDS", "register"]

COMMANDS = ("worker",)
DEFAULT_WEB_PORT = 6066

log = logging.getLogger(__name__)


def web_port(requested: int | None) -> int:
    """``requested``, else ``DEFAULT_WEB_PORT`` if free on 127.0.0.1, else a free port."""
    if requested is not None:
        return requested
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DEFAULT_WEB_PORT))
            return DEFAULT_WEB_PORT
        except OSError:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    log.warning("web port %d is in use; /healthz and /readyz are on %d", DEFAULT_WEB_PORT, port)
    return port


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the stream stages (the Faust worker)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_file_option(worker)
    worker.add_argument(
        "--stage", action="append", default=[], metavar="NAME", help="run only this stage (repeat)"
    )
    worker.add_argument("--app-id", default=None, help="Faust app id / consumer group")
    worker.add_argument(
        "--store",
        default="rocksdb://",
        help="table store: rocksdb:// (default; local RocksDB stores in the data dir, a restart "
        "replays only the changelog past them) or memory:// (state rebuilt from the changelog "
        "at each start)",
    )
    worker.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="base folder of the worker's local state (DIR/<app id>: the RocksDB stores; one "
        "per worker when several run on a machine); default $HEADRACE_DATA_DIR, else "
        "$XDG_STATE_HOME/headrace/workers or ~/.local/state/headrace/workers",
    )
    worker.add_argument(
        "--web-port",
        type=int,
        default=None,
        help=f"health/web port on 127.0.0.1 (default {DEFAULT_WEB_PORT}, or a free port when "
        "that one is taken, e.g. by another worker on the machine; the log says which)",
    )
    worker.add_argument("--batch-size", type=int, default=5000, help="events per batch (5000)")
    worker.add_argument(
        "--idle-ms", type=int, default=5000, help="idle time before windows close by timer"
    )
    worker.add_argument(
        "--input-done-file",
        metavar="PATH",
        help="close windows by the idle timer only once PATH exists (headrace run "
        "--until-idle creates it when every source finished and every lag is 0; without it "
        "the timer runs whenever a caught-up partition is quiet)",
    )
    worker.add_argument(
        "--stall-after",
        type=float,
        default=None,
        help="seconds without progress = stalled (default: the file's watchdog.unhealthy_after)",
    )
    worker.add_argument(
        "--recovery-timeout",
        type=float,
        default=600.0,
        help="seconds table recovery may take before the worker reports it failed (600)",
    )
    worker.add_argument(
        "--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"]
    )
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:

    import faust

    from headrace.config import load_pipeline
    from headrace.host import host
    from streams.app import WorkerOptions, build_worker

    pipeline = load_pipeline(pipeline_path(args))
    options = WorkerOptions(
        app_id=args.app_id,
        store=args.store,
        web_port=web_port(args.web_port),
        batch_size=args.batch_size,
        idle_ms=args.idle_ms,
        stall_after=args.stall_after,
        recovery_timeout=args.recovery_timeout,
        stages=tuple(args.stage),
        schemas_dir=pipeline_path(args).resolve().parent / pipeline.schemas.dir,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        input_done_file=Path(args.input_done_file) if args.input_done_file else None,
    )
    app, _runners = build_worker(pipeline, options)
    worker = faust.Worker(app, loglevel=args.loglevel, override_logging=False)
    # Faust installs its own SIGTERM/SIGINT handling (stop=None)
    host(pipeline, kind="stage", name="worker", run=worker.execute_from_commandline, stop=None)
    return 0
