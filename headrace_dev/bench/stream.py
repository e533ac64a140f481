"""``headrace bench stream``: naive Faust agents vs our stages, same topic, same run.

One input topic (1 partition, so the figures are per worker) of JSON orders. Each contender
is a separate worker process reading it from the beginning under its own group:

- baseline ``faust naive agent`` (``headrace_dev.bench.stream_naive``, stateless) and
  ``faust naive table agent`` (one Table update per event);
- ours: ``transform`` (filter + cast + set) and ``transform + aggregate`` (the same transform
  stage, then a 10 s tumbling window sum/count per customer, in the same worker).

With ``--peer quix``, also Quix Streams (``headrace_dev.bench.quix_peer``: its own venv,
built on first use) on the same topic: its transform against ours, and its windowed
aggregate against ours with the state in RocksDB, as Quix keeps it.

Throughput is read from each process's own counter (``/metrics``), from its first counted
event to the last, so start-up and group join are excluded; so is each process's CPU per
event (user + system, from ``/proc``) over the same span. Peak RSS is each process's own
(``VmHWM``). Figures are reported, never asserted (see ``headrace_dev.bench.common``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from headrace_dev.bench.common import BenchFigure, process_peak_rss_mb
from headrace_dev.bench.quix_peer import QUIX_APP, QUIX_VERSION, ensure_quix
from headrace_dev.stack.paths import StackPaths
from streams.testing import free_port

__all__ = ["run"]

KINDS = ("transform", "aggregate")

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


@dataclass(frozen=True)
class Contender:
    """What one worker process did: events/s, CPU per event, peak memory."""

    rate: float
    cpu_us: float  # CPU seconds (user + system) per event, from its first count to the last
    peak_mb: float  # the process's own peak RSS (VmHWM), start-up included

    def words(self) -> str:
        return f"{self.cpu_us:.1f} us CPU/event, peak RSS {self.peak_mb:.0f} MiB"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(argv: list[str], port: int, name: str, labels: str, n: int, log: Path) -> Contender:
    """Run ``argv`` until its counter reaches ``n``: events/s and CPU from its first count to
    the last, and its peak RSS."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd())
    try:
        first: tuple[float, float, float] | None = None
        deadline = time.monotonic() + (120 if n <= 60_000 else 600)
        while time.monotonic() < deadline and proc.poll() is None:
            value = _counter(port, name, labels)
            now = time.perf_counter()
            if value:
                if first is None:
                    first = (now, value, _cpu_seconds(proc.pid))
                if value >= n:
                    events, seconds = value - first[1], now - first[0]
                    cpu = _cpu_seconds(proc.pid) - first[2]
                    return Contender(
                        events / seconds if seconds > 0 else 0.0,
                        cpu / events * 1e6 if events else 0.0,
                        process_peak_rss_mb(proc.pid) or 0.0,
                    )
            time.sleep(0.05)
        raise RuntimeError(f"{' '.join(argv[:4])}... did not count {n} events; see {log}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ours(
    kind: str, u: str, bootstrap: str, topic: str, n: int, work: Path, store: str
) -> Contender:
    """Our worker: the ``transform`` stage, or it and the ``aggregate`` stage after it."""
    port = free_port()
    pipeline = work / f"{kind}-{store[:3]}.yaml"
    name = f"{u}{kind[:3]}{store[:3]}"
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
    argv = [sys.executable, "-m", "headrace_cli.main", "worker", "-f", str(pipeline)]
    argv += ["--web-port", str(free_port()), "--app-id", f"{name}-app"]
    argv += ["--data-dir", str(work / "data"), "--store", store]
    labels = f'stage="{stage}",kind="stage",outcome="in"'
    return _measure(argv, port, "headrace_records_total", labels, n, work / "bench.log")


def _naive(mode: str, u: str, bootstrap: str, topic: str, n: int, work: Path) -> Contender:
    """The naive Faust agent (``headrace_dev.bench.stream_naive``)."""
    port = free_port()
    argv = [sys.executable, "-m", "headrace_dev.bench.stream_naive", "--bootstrap", bootstrap]
    argv += ["--app-id", f"{u}-{mode}", "--topic", topic, "--mode", mode]
    argv += ["--web-port", str(free_port()), "--metrics-port", str(port)]
    argv += ["--data-dir", str(work / "data")]
    return _measure(argv, port, "headrace_bench_events_total", "", n, work / "bench.log")


def _quix(
    python: Path, mode: str, u: str, bootstrap: str, topic: str, n: int, work: Path
) -> Contender:
    """Quix Streams doing the same work (``headrace_dev/bench/quix_app.py``, its own venv)."""
    port = free_port()
    argv = [str(python), str(QUIX_APP), "--bootstrap", bootstrap, "--group", f"{u}-quix-{mode}"]
    argv += ["--topic", topic, "--output", f"{u}.quix-{mode}", "--mode", mode]
    argv += ["--metrics-port", str(port), "--state-dir", str(work / "quix-state")]
    return _measure(argv, port, "headrace_bench_events_total", "", n, work / "bench.log")


def run(env: dict[str, str], quick: bool, peer: str | None = None) -> list[BenchFigure]:
    """The figures (see the module doc); ``quick``: 60,000 orders, else 300,000. ``peer``
    ``quix`` adds our stages against Quix Streams on the same topic."""
    bootstrap = env.get("HEADRACE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    n = 60_000 if quick else 300_000
    u = f"bench{uuid4().hex[:8]}"
    topic = f"{u}.orders"
    python = ensure_quix(StackPaths.from_env().cache) if peer == "quix" else None
    _produce(bootstrap, topic, n)
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    naive = {mode: _naive(mode, u, bootstrap, topic, n, work) for mode in ("stateless", "table")}
    # the naive baseline's store for ours: the ratio compares the processing, not the stores
    ours = {kind: _ours(kind, u, bootstrap, topic, n, work, "memory://") for kind in KINDS}
    figures = [
        BenchFigure(
            "stream transform stage",
            n,
            ours["transform"].rate,
            "faust naive agent",
            naive["stateless"].rate,
            ours["transform"].peak_mb,
            note=f"per worker, 1 partition; ours {ours['transform'].words()}; "
            f"the naive agent {naive['stateless'].words()}",
        ),
        BenchFigure(
            "stream transform+aggregate stage",
            n,
            ours["aggregate"].rate,
            "faust naive table agent",
            naive["table"].rate,
            ours["aggregate"].peak_mb,
            note="aggregate input rate (after the transform stage, same worker); "
            f"ours {ours['aggregate'].words()}; the naive agent {naive['table'].words()}",
        ),
    ]
    if python is not None:
        figures += _against_quix(python, u, bootstrap, topic, n, work, ours["transform"])
    return figures


def _against_quix(
    python: Path, u: str, bootstrap: str, topic: str, n: int, work: Path, transform: Contender
) -> list[BenchFigure]:
    """Our transform, and transform + aggregate with state in RocksDB (as Quix keeps it),
    against Quix Streams doing the same on the same topic."""
    quix = {mode: _quix(python, mode, u, bootstrap, topic, n, work) for mode in KINDS}
    aggregate = _ours("aggregate", u, bootstrap, topic, n, work, "rocksdb://")
    peer = f"Quix Streams {QUIX_VERSION}"
    return [
        BenchFigure(
            "stream transform vs quix",
            n,
            transform.rate,
            f"{peer}, same transform (filter, Decimal price, total)",
            quix["transform"].rate,
            transform.peak_mb,
            note=f"per worker, 1 partition; ours {transform.words()}; "
            f"Quix {quix['transform'].words()}; target >= 3x and peak RSS <= Quix's",
        ),
        BenchFigure(
            "stream transform+aggregate vs quix",
            n,
            aggregate.rate,
            f"{peer}, same filter/total then 10 s tumbling sum/count per customer",
            quix["aggregate"].rate,
            aggregate.peak_mb,
            note="state in RocksDB on both sides; ours: two stages and a topic between them, "
            "exact Decimal sums; Quix: one dataframe, float sums (its state has no Decimal); "
            f"ours {aggregate.words()}; Quix {quix['aggregate'].words()}",
        ),
    ]


if __name__ == "__main__":
    for figure in run(dict(os.environ), quick="--quick" in sys.argv, peer=None):
        print(figure.json_line())
