"""The baseline of ``headrace_dev.bench.stream``: a naive Faust agent, one event at a time.

``python -m headrace_dev.bench.stream_naive --topic T --mode stateless|table --metrics-port P``
reads JSON values with ``stream.events()`` (Faust's documented style) and counts each event in
``headrace_bench_events``; ``table`` mode also does one Table update per event (``counts[key]
+= 1``, a changelog write each time), as FIELD-NOTES measured.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import faust
from prometheus_client import Counter, start_http_server

from streams.datadir import worker_data_dir

__all__ = ["main"]

EVENTS = Counter("headrace_bench_events", "Events handled by the naive agent.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=["stateless", "table"], required=True)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, default=None, help="base of the datadir")
    args = parser.parse_args(argv)
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=str(worker_data_dir(args.app_id, args.data_dir)),
        web_port=args.web_port,
        web_host="127.0.0.1",
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="json")
    counts = app.Table(f"{args.app_id}-counts", default=int, partitions=1)
    table_mode = args.mode == "table"

    @app.agent(topic)
    async def naive(stream: faust.StreamT[dict[str, object]]) -> AsyncIterator[None]:
        async for event in stream.events():
            if table_mode:
                counts[event.value.get("customer_id")] += 1
            EVENTS.inc()
            yield None

    start_http_server(args.metrics_port, addr="127.0.0.1")
    faust.Worker(app, loglevel="warn").execute_from_commandline()


if __name__ == "__main__":
    main()
