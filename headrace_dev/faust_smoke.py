"""The smallest real Faust app: count records per key in a Table and emit the running count.

This is our "Faust on this Kafka" smoke check (consumer group, table changelog, recovery after
restart), used by the integration tests and ``headrace demo``. Run it as a process::

    python -m headrace_dev.faust_smoke --bootstrap 127.0.0.1:9092 --app-id smoke \
        --source in --sink out

Contract: for every record on ``source`` (key = bytes), the table ``<app-id>-counts`` adds one to
that key and a record ``key -> str(count)`` goes to ``sink``. The table is backed by its
changelog topic, so after a restart the counts go on from where they were: with ``--store
memory://`` (the default here) the state comes back from the changelog alone; with
``rocksdb://`` from the local store in the datadir plus the changelog after its offset.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import faust

from streams.datadir import worker_data_dir

__all__ = ["main", "make_app"]


def make_app(
    *,
    app_id: str,
    bootstrap: str,
    source: str,
    sink: str,
    partitions: int,
    web_port: int,
    data_dir: Path | None = None,
    store: str = "memory://",
) -> faust.App:
    """Build the counting app with its table in ``store``; its datadir is
    ``streams.datadir.worker_data_dir(app_id, data_dir)``."""
    app = faust.App(
        app_id,
        datadir=str(worker_data_dir(app_id, data_dir)),
        broker=f"kafka://{bootstrap}",
        store=store,
        topic_partitions=partitions,
        web_port=web_port,
        web_host="127.0.0.1",
        producer_acks=-1,
    )
    source_topic = app.topic(source, key_serializer="raw", value_serializer="raw")
    sink_topic = app.topic(sink, key_serializer="raw", value_serializer="raw")
    counts = app.Table(f"{app_id}-counts", default=int, partitions=partitions)

    @app.agent(source_topic)
    async def count(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            key = (event.key or b"").decode()
            counts[key] += 1
            await sink_topic.send(key=key.encode(), value=str(counts[key]).encode())
            yield None

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--web-port", type=int, default=6066)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="base of the datadir (streams.datadir)"
    )
    parser.add_argument("--store", default="memory://", help="table store: memory:// or rocksdb://")
    parser.add_argument(
        "--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"]
    )
    args = parser.parse_args(argv)
    app = make_app(
        app_id=args.app_id,
        bootstrap=args.bootstrap,
        source=args.source,
        sink=args.sink,
        partitions=args.partitions,
        web_port=args.web_port,
        data_dir=args.data_dir,
        store=args.store,
    )
    worker = faust.Worker(app, loglevel=args.loglevel)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
