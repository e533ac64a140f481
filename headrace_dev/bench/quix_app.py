"""The Quix Streams side of ``headrace bench stream --peer quix`` (runs in the peer's venv).

``python quix_app.py --topic T --output O --mode transform|aggregate --metrics-port P ...``
does, in Quix Streams' own idiom (one StreamingDataFrame), the work the bench gives our
stages: ``transform`` keeps orders with ``quantity > 0``, reads ``price`` as a Decimal and
adds ``total = price * quantity`` (both written as text, as our JSON codec writes Decimals);
``aggregate`` also sums ``total`` and counts orders per customer (the message key) in 10 s
tumbling event-time windows, emitted when final. Quix keeps window state in RocksDB through
orjson, which has no Decimal, so its sums are floats (ours are exact).

Each input event is counted in ``headrace_bench_events_total``, served on ``--metrics-port``
in Prometheus' text format, so the bench reads its throughput as it reads ours. Standalone:
imports only the standard library and quixstreams.
"""

from __future__ import annotations

import argparse
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EVENTS = [0]


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"headrace_bench_events_total {EVENTS[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        return


def _count(_value: Any) -> None:
    EVENTS[0] += 1


def _keep(value: dict[str, Any]) -> bool:
    return bool(value["quantity"] > 0)


def _total(value: dict[str, Any]) -> dict[str, Any]:
    price = Decimal(value["price"])
    return {**value, "price": str(price), "total": str(price * value["quantity"])}


def _total_float(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "total": float(Decimal(value["price"]) * value["quantity"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--mode", choices=["transform", "aggregate"], required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()

    from quixstreams import Application
    from quixstreams.dataframe.windows import aggregations as agg

    server = ThreadingHTTPServer(("127.0.0.1", args.metrics_port), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
        use_changelog_topics=True,
    )
    source = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    output = app.topic(args.output, value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.update(_count).filter(_keep)
    if args.mode == "transform":
        sdf = sdf.apply(_total)
    else:
        sdf = (
            sdf.apply(_total_float)
            .tumbling_window(timedelta(seconds=10))
            .agg(revenue=agg.Sum("total"), orders=agg.Count())
            .final()
        )
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
