"""``headrace bench stream``: naive Faust agents vs our stages, same topic, same run.

One input topic (1 partition, so the figures are per worker) of JSON orders. Each contender
is a separate worker process reading it from the beginning under its own group:

- baseline ``faust naive agent`` (``headrace_dev.bench.stream_naive``, stateless) and
  ``faust naive table agent`` (one Table update per event);
- ours: ``transform`` (filter + cast + set) and ``transform + aggregate`` (the same transform
  stage, then a 10 s tumbling window sum/count per customer, in the same worker).

Throughput is read from each process's own counter (``/metrics``), from its first counted
event to the last, so start-up and group join are excluded. Figures are reported, never
asserted (see ``headrace_dev.bench.common``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from uuid import uuid4

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from headrace_dev.bench.common import BenchFigure, peak_rss_mb
from streams.testing import free_port

__all__ = ["run"]

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{topic}]
stages:
  clean:
    from: {topic}
    to: {u}.clean
    transform:
      - filter: "quantity > 0"
      - cast: {{price: decimal}}
      - set: {{total: "price * quantity"}}
{aggregate}metrics: {{port: {metrics_port}}}
"""
AGGREGATE = """  revenue:
    from: {u}.clean
    to: {u}.revenue
    aggregate:
      group_by: [customer_id]
      window: {{type: tumbling, size: 10s}}
      measures: {{revenue: sum(total), orders: count()}}
"""


def _produce(bootstrap: str, topic: str, n: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    base = int(time.time() * 1000) - 3_600_000
    for i in range(n):
        c = f"c{i % 500:03d}"
        value = {
            "order_id": i,
            "customer_id": c,
            "sku": f"s{i % 13}",
            "quantity": 1 + i % 3,
            "price": f"{(i % 400) / 4:.2f}",
            "status": "paid",
        }
        while True:
            try:
                producer.produce(topic, orjson.dumps(value), c.encode(), timestamp=base + i * 2)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)


def _counter(port: int, name: str, labels: str) -> float | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and all(part in line for part in labels.split(",") if part):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else 0.0


def _measure(argv: list[str], port: int, name: str, labels: str, n: int, log: Path) -> float:
    """Run ``argv`` until its counter reaches ``n``; events/s from first count to the last."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd())
    try:
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + (120 if n <= 60_000 else 600)
        while time.monotonic() < deadline and proc.poll() is None:
            value = _counter(port, name, labels)
            now = time.perf_counter()
            if value:
                if first is None:
                    first = (now, value)
                if value >= n:
                    return (value - first[1]) / (now - first[0]) if now > first[0] else 0.0
            time.sleep(0.05)
        raise RuntimeError(f"{' '.join(argv[:4])}... did not count {n} events; see {log}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(env: dict[str, str], quick: bool) -> list[BenchFigure]:
    """The figures (see the module doc); ``quick``: 60,000 orders, else 300,000."""
    bootstrap = env.get("HEADRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    n = 60_000 if quick else 300_000
    u = f"bench{uuid4().hex[:8]}"
    topic = f"{u}.orders"
    _produce(bootstrap, topic, n)
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    log = work / "bench.log"
    py = sys.executable
    rates: dict[str, float] = {}
    for mode in ("stateless", "table"):
        port = free_port()
        rates[mode] = _measure(
            [
                py,
                "-m",
                "headrace_dev.bench.stream_naive",
                "--bootstrap",
                bootstrap,
                "--app-id",
                f"{u}-{mode}",
                "--topic",
                topic,
                "--mode",
                mode,
                "--web-port",
                str(free_port()),
                "--metrics-port",
                str(port),
                "--data-dir",
                str(work / "data"),
            ],
            port,
            "headrace_bench_events_total",
            "",
            n,
            log,
        )
    for kind in ("transform", "aggregate"):
        port = free_port()
        pipeline = work / f"{kind}.yaml"
        name = f"{u}{kind[:3]}"
        pipeline.write_text(
            PIPELINE.format(
                u=name,
                bootstrap=bootstrap,
                topic=topic,
                metrics_port=port,
                aggregate=AGGREGATE.format(u=name) if kind == "aggregate" else "",
            )
        )
        stage = "revenue" if kind == "aggregate" else "clean"
        rates[kind] = _measure(
            [
                py,
                "-m",
                "headrace_cli.main",
                "worker",
                "-f",
                str(pipeline),
                "--web-port",
                str(free_port()),
                "--app-id",
                f"{name}-app",
                "--data-dir",
                str(work / "data"),
                # the naive baseline's store: the ratio compares the processing, not the stores
                "--store",
                "memory://",
            ],
            port,
            "headrace_records_total",
            f'stage="{stage}",kind="stage",outcome="in"',
            n,
            log,
        )
    rss = peak_rss_mb(children=True)
    return [
        BenchFigure(
            "stream transform stage",
            n,
            rates["transform"],
            "faust naive agent",
            rates["stateless"],
            rss,
            note="per worker, 1 partition",
        ),
        BenchFigure(
            "stream transform+aggregate stage",
            n,
            rates["aggregate"],
            "faust naive table agent",
            rates["table"],
            rss,
            note="aggregate input rate (after the transform stage, same worker)",
        ),
    ]


if __name__ == "__main__":
    for figure in run(dict(os.environ), quick="--quick" in sys.argv):
        print(figure.json_line())
