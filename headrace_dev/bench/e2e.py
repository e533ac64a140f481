"""``headrace bench e2e``: end-to-end latency through a live pipeline at a steady rate.

The demo pipeline's shape, every piece a real ``headrace`` process on the local stack:
MariaDB ``orders`` -> ``headrace produce`` (incrementing id, ``updated_at`` as the event time)
-> Kafka -> ``headrace worker`` (a filter + set stage) -> Kafka -> ``headrace sink`` into
MongoDB (the stack's patched FerretDB; the default) or DynamoDB (moto), with the settings in
``TUNING`` (what measured best here per sink).

1. The three processes start; one priming row goes through, so group joins, topic and table
   creation are behind us.
2. The bench inserts rows at a steady ``rate`` for ``seconds``, in small transactions every
   20 ms, each row's ``updated_at`` set to the time of its INSERT (its commit time, give or
   take the commit itself, which only makes the latency look longer).
3. It waits until the sink has written every row, then reads the sink's own
   ``headrace_end_to_end_seconds`` histogram (what production reports) and takes p50 and p99
   of the rows of step 2, interpolated within buckets as PromQL's ``histogram_quantile``.

Where the time goes: a probe consumer in the bench reads both topics as the rows pass and
notes, per topic, when it saw each row's message, exactly (p50/p99 of "in the raw topic" and
"in the clean topic" after the commit), next to the sink's figure.

The figure: ``ours_per_s`` is rows written / (first insert to last write), ``baseline_per_s``
the rate actually offered (rows inserted / insert time), so a ratio near 1 means the pipeline
kept up (for a short run the last rows' latency weighs on it; the note also says when more
than 2 s of input was still unwritten as the last row was inserted). ``peak_rss_mb`` is the
largest peak RSS of the three processes (each read from /proc/<pid>/status before it stops);
the note has each.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from connectors.mongodb import MongoWrite
from headrace.config import KafkaConfig
from headrace.errors import HeadraceError
from headrace.kafka_clients import ensure_topics
from headrace_cli.status_view import histogram_quantile, scrape
from headrace_dev.bench.common import BenchFigure, process_peak_rss_mb

__all__ = ["SINKS", "TUNING", "E2EResult", "Tuning", "figure", "pipeline_yaml", "run", "run_e2e"]

RATE = 5000  # records/s: the target rate
SINKS = ("mongodb", "dynamodb")
SINK = "mongodb"  # the default: see docs/benchmark-history.md (FerretDB sustains more than moto)


@dataclass(frozen=True)
class Tuning:
    """The pipeline settings the bench runs with (the same keys a pipeline file has).

    ``sink_batch``/``sink_linger``: the sink's ``batch_size``/``linger``; ``poll``/
    ``source_batch``: the MySQL source's ``poll_interval``/``batch_size``; ``worker_batch``:
    ``headrace worker --batch-size``; ``mongo_write``: the MongoDB sink's ``write`` mode.
    """

    sink_batch: int
    sink_linger: str = "100ms"
    poll: str = "50ms"
    source_batch: int = 10_000
    worker_batch: int = 1000
    mongo_write: MongoWrite = "upsert"


#: per sink, what measured best here (docs/benchmark-history.md has the runs). DynamoDB: batches of
#: 100 (default 1000): against moto, 100 kept up with 500 rows/s (p50 0.45-0.5 s, p99
#: 1.6-2.9 s) where 1000 fell behind (350-400 written/s). MongoDB: one 500-op request per batch
#: (the sink's MAX_OPS) and ``write: insert``: the source is append-only (``incrementing`` emits
#: each new row once, every order_id is new), so inserting writes the same documents as an
#: upsert, and a replayed record's duplicate key counts as already written. FerretDB's upsert
#: costs a lookup per document and caps near 1,300-2,900 documents/s here (it fell behind at
#: 5,000/s where insert kept up); a source that emits updates needs ``upsert``. Both: the
#: source polls every 50 ms (default 5 s) and the worker takes batches of 1,000 (default 5,000):
#: in three alternating pairs at 5,000/s into MongoDB this (with a 50 ms sink linger) measured
#: p50 0.32-0.38 s / p99 0.71-1.36 s against 0.41-0.58 s / 1.19-1.93 s with 100 ms, 100 ms and
#: 5,000.
TUNING: dict[str, Tuning] = {
    "dynamodb": Tuning(sink_batch=100),
    "mongodb": Tuning(sink_batch=500, sink_linger="50ms", mongo_write="insert"),
}
PIPELINE = """\
name: {name}
kafka: {{bootstrap_servers: "{bootstrap}"}}
sources:
  orders_db:
    type: mysql
    url: "{mysql_url}"
    table: orders
    mode: incrementing
    incrementing_column: id
    timestamp_field: updated_at
    topic: {name}.orders.raw
    key: [order_id]
    poll_interval: {t.poll}
    batch_size: {t.source_batch}
stages:
  clean:
    from: {name}.orders.raw
    to: {name}.orders.clean
    transform:
      - filter: "status != 'cancelled' and quantity > 0"
      - set: {{total: "price * quantity"}}
sinks:
{sink}
metrics: {{port: {metrics_port}}}
"""
SINK_YAML = {
    "dynamodb": """\
  orders_dynamodb:
    type: dynamodb
    from: {name}.orders.clean
    table: {name}
    partition_key: order_id
    endpoint_url: "{aws_endpoint}"
    region: "{region}"
    aws_access_key_id: "{aws_key}"
    aws_secret_access_key: "{aws_secret}"
    create: true
    linger: {t.sink_linger}
    batch_size: {t.sink_batch}
""",
    "mongodb": """\
  orders_mongodb:
    type: mongodb
    from: {name}.orders.clean
    uri: "{mongo_uri}"
    database: {name}
    collection: orders
    write: {t.mongo_write}
    linger: {t.sink_linger}
    batch_size: {t.sink_batch}
""",
}
_TABLE = """CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  order_id VARCHAR(24) NOT NULL,
  customer_id VARCHAR(16) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  quantity INT NOT NULL,
  status VARCHAR(16) NOT NULL,
  updated_at DATETIME(3) NOT NULL
)"""
_INSERT = (
    "INSERT INTO orders (order_id, customer_id, price, quantity, status, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
_E2E = "headrace_end_to_end_seconds_bucket"


@dataclass(frozen=True)
class E2EResult:
    """What one steady run measured (see the module doc)."""

    rows: int
    written: int
    #: rows not yet written when the last one was inserted
    backlog: int
    offered_per_s: float
    written_per_s: float
    p50_s: float | None
    p99_s: float | None
    peak_rss_mb: dict[str, float]
    #: hop (raw topic, clean topic) -> (rows seen, p50 s, p99 s) of commit to seen there
    hops: dict[str, tuple[int, float, float]]
    #: the machine's 1-minute load average as the steady inserts ended (shared machines)
    load_1m: float
    sink: str
    tuning: Tuning


class _Process:
    """One ``headrace`` subprocess with its log; its peak RSS is read before it stops."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.peak_mb = 0.0

    def check(self) -> None:
        code = self.popen.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
            raise HeadraceError(
                f"bench e2e: {self.name} exited with {code} while the pipeline ran; "
                f"last lines of {self.log}:\n" + "\n".join(tail)
            )

    def stop(self) -> None:
        self.peak_mb = max(self.peak_mb, process_peak_rss_mb(self.popen.pid) or 0.0)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class _HopProbe:
    """Reads ``topics`` from the start in a thread; for each message with a timestamp at or
    after ``since_ms``, keeps (seen - timestamp) seconds per topic."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._hop = topics  # topic -> hop name
        self.since_ms = float("inf")
        self.seen: dict[str, list[float]] = {hop: [] for hop in topics.values()}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-e2e-probe-{uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        parts = []
        for topic in topics:
            meta = self._consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [TopicPartition(topic, p, 0) for p in meta.partitions]
        self._consumer.assign(parts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-e2e-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, 0.05):
                if msg.error() is not None:
                    continue
                now_ms = time.time() * 1000
                _kind, ts = msg.timestamp()
                if ts >= self.since_ms:
                    self.seen[self._hop[str(msg.topic())]].append(max(0.0, now_ms - ts) / 1000)

    def close(self) -> dict[str, tuple[int, float, float]]:
        """Stop; (rows, p50 s, p99 s) per hop that saw anything."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        return {hop: _percentiles(v) for hop, v in self.seen.items() if v}


def _percentiles(values: list[float]) -> tuple[int, float, float]:
    """(count, p50, p99) of ``values``: nearest-rank percentiles."""
    ordered = sorted(values)
    n = len(ordered)
    return n, ordered[min(n - 1, int(0.5 * n))], ordered[min(n - 1, int(0.99 * n))]


def _sink_buckets(address: str, sink: str) -> dict[float, float]:
    """The sink's end-to-end histogram as {upper bound: cumulative count}."""
    out: dict[float, float] = {}
    for (name, labels), value in scrape(address, timeout=2.0).items():
        tags = dict(labels)
        if name == _E2E and tags.get("stage") == sink and tags.get("kind") == "sink":
            out[float(tags["le"])] = out.get(float(tags["le"]), 0.0) + value
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(what: str, done: Callable[[], bool], procs: list[_Process], timeout: float) -> float:
    """Poll ``done`` every 0.1 s; return when it became true (perf_counter), or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            p.check()
        try:
            if done():
                return time.perf_counter()
        except OSError:  # the metrics endpoint is not up yet
            pass
        time.sleep(0.1)
    raise HeadraceError(f"bench e2e: {what} did not happen within {timeout:.0f} s")


def _row(n: int, stamp: datetime) -> tuple[Any, ...]:
    """Order ``n`` (every one passes the stage's filter), committed at ``stamp`` (naive UTC)."""
    return (f"o{n:09d}", f"c{n % 997}", f"{n % 400 / 4 + 1:.2f}", 1 + n % 3, "paid", stamp)


def _insert_steadily(cursor: Any, rate: int, seconds: float) -> tuple[int, float]:
    """Insert rows at ``rate``/s for ``seconds`` (a commit every 20 ms); (rows, elapsed)."""
    start = time.perf_counter()
    inserted = 0
    total = int(rate * seconds)
    while inserted < total:
        now = time.perf_counter()
        due = min(total, int(rate * (now - start))) - inserted
        if due > 0:
            stamp = datetime.now(UTC).replace(tzinfo=None)
            rows = [_row(inserted + i + 1, stamp) for i in range(due)]
            cursor.executemany(_INSERT, rows)
            inserted += due
        time.sleep(max(0.0, 0.02 - (time.perf_counter() - now)))
    return inserted, time.perf_counter() - start


def pipeline_yaml(
    env: dict[str, str], name: str, sink: str, tuning: Tuning, metrics_port: int
) -> str:
    """The pipeline file of run ``name`` (its MariaDB database, topics' prefix, DynamoDB
    table or MongoDB database) into ``sink``, with ``tuning``, on the stack in ``env``."""
    sink_yaml = SINK_YAML[sink].format(
        name=name,
        t=tuning,
        aws_endpoint=env["HEADRACE_AWS_ENDPOINT"],
        region=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_key=env.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        mongo_uri=env["HEADRACE_MONGO_URI"],
    )
    return PIPELINE.format(
        name=name,
        bootstrap=env["HEADRACE_KAFKA_BOOTSTRAP"],
        mysql_url=env["HEADRACE_MYSQL_URL"].rsplit("/", 1)[0] + f"/{name}",
        t=tuning,
        sink=sink_yaml.rstrip("\n"),
        metrics_port=metrics_port,
    )


def run_e2e(
    env: dict[str, str],
    rate: int,
    seconds: float,
    work: Path,
    sink: str = SINK,
    tuning: Tuning | None = None,
) -> E2EResult:
    """One steady run against the stack in ``env`` into ``sink`` (one of ``SINKS``), with
    ``tuning`` (default: ``TUNING[sink]``); see the module doc."""
    import pymysql

    if sink not in SINKS:
        raise HeadraceError(
            f"bench e2e: unknown sink {sink!r}; use one of {', '.join(SINKS)} (--sink)"
        )
    tune = tuning or TUNING[sink]
    name = f"benche2e{uuid4().hex[:8]}"
    conn = pymysql.connect(
        host=env["HEADRACE_MYSQL_HOST"],
        port=int(env["HEADRACE_MYSQL_PORT"]),
        user=env["HEADRACE_MYSQL_USER"],
        password=env["HEADRACE_MYSQL_PASSWORD"],
        autocommit=True,
    )
    cursor = conn.cursor()
    cursor.execute(f"CREATE DATABASE {name}")
    cursor.execute(f"USE {name}")
    cursor.execute(_TABLE)
    bootstrap = env["HEADRACE_KAFKA_BOOTSTRAP"]
    sink_name = f"orders_{sink}"
    pipeline = work / "pipeline.yaml"
    pipeline.write_text(pipeline_yaml(env, name, sink, tune, _free_port()))
    # the topics exist before the processes start, as in a deployment (3 partitions each)
    kafka = KafkaConfig.model_validate({"bootstrap_servers": bootstrap})
    ensure_topics(kafka, {f"{name}.orders.raw": 3, f"{name}.orders.clean": 3})
    cli = [sys.executable, "-m", "headrace_cli.main"]
    sink_port = _free_port()
    address = f"127.0.0.1:{sink_port}"
    procs: list[_Process] = []
    probe = _HopProbe(
        bootstrap, {f"{name}.orders.raw": "raw topic", f"{name}.orders.clean": "clean topic"}
    )
    hops: dict[str, tuple[int, float, float]] = {}
    try:
        procs.append(
            _Process(
                "sink",
                [
                    *cli,
                    "sink",
                    "-f",
                    str(pipeline),
                    sink_name,
                    "--metrics-port",
                    str(sink_port),
                ],
                work / "sink.log",
            )
        )
        procs.append(
            _Process(
                "worker",
                [
                    *cli,
                    "worker",
                    "-f",
                    str(pipeline),
                    "--web-port",
                    str(_free_port()),
                    "--batch-size",
                    str(tune.worker_batch),
                ],
                work / "worker.log",
            )
        )
        procs.append(
            _Process(
                "source", [*cli, "produce", "-f", str(pipeline), "orders_db"], work / "source.log"
            )
        )

        def written() -> float:
            return _sink_buckets(address, sink_name).get(float("inf"), 0.0)

        cursor.execute(_INSERT, _row(0, datetime.now(UTC).replace(tzinfo=None)))
        _wait_for(f"the priming row reaching the {sink} sink", lambda: written() >= 1, procs, 180)
        before = _sink_buckets(address, sink_name)
        primed = before.get(float("inf"), 0.0)
        started = time.perf_counter()
        probe.since_ms = time.time() * 1000 - 1  # the steady rows' commit times, not priming
        rows, insert_s = _insert_steadily(cursor, rate, seconds)
        load_1m = os.getloadavg()[0]
        backlog = rows - int(written() - primed)
        drain_timeout = max(60.0, seconds)
        try:
            finished = _wait_for(
                f"the sink writing all {rows} rows",
                lambda: written() >= primed + rows,
                procs,
                drain_timeout,
            )
        except HeadraceError:
            finished = time.perf_counter()
        after = _sink_buckets(address, sink_name)
        delta = {le: n - before.get(le, 0.0) for le, n in after.items()}
        done = int(delta.get(float("inf"), 0.0))
    finally:
        hops = probe.close()
        for p in reversed(procs):
            p.stop()
        _cleanup(cursor, conn, name, sink, env)
    return E2EResult(
        rows=rows,
        written=done,
        backlog=backlog,
        offered_per_s=rows / insert_s,
        written_per_s=done / (finished - started),
        p50_s=histogram_quantile(0.5, delta),
        p99_s=histogram_quantile(0.99, delta),
        peak_rss_mb={p.name: p.peak_mb for p in procs},
        hops=hops,
        load_1m=load_1m,
        sink=sink,
        tuning=tune,
    )


def _cleanup(cursor: Any, conn: Any, name: str, sink: str, env: dict[str, str]) -> None:
    """Drop this run's MariaDB database, sink table or database, and topics (all named after
    the run)."""
    import boto3
    from confluent_kafka.admin import AdminClient

    try:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()
    if sink == "dynamodb":
        client = boto3.client(
            "dynamodb",
            endpoint_url=env["HEADRACE_AWS_ENDPOINT"],
            region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
        )
        try:
            client.delete_table(TableName=name)
        except Exception:  # noqa: S110 - the sink may not have created it
            pass
    else:
        from pymongo import MongoClient

        mongo: Any = MongoClient(env["HEADRACE_MONGO_URI"], serverSelectionTimeoutMS=10_000)
        try:
            mongo.drop_database(name)
        except Exception:  # noqa: S110 - cleanup only
            pass
        finally:
            mongo.close()
    admin = AdminClient({"bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"]})
    ours = [t for t in admin.list_topics(timeout=10).topics if name in t]
    if ours:
        for future in admin.delete_topics(ours).values():
            try:
                future.result(30)
            except Exception:  # noqa: S110 - cleanup only
                pass


_SINK_LABEL = {"mongodb": "MongoDB sink (FerretDB)", "dynamodb": "DynamoDB sink (moto)"}


def run(env: dict[str, str], quick: bool, rate: int = RATE, sink: str = SINK) -> list[BenchFigure]:
    """The e2e figure at ``rate`` records/s into ``sink``: 5 s steady (``quick``) or 60 s.

    When the pipeline cannot keep up, the backlog is waited for at most 60 s (or the run's
    length); rows still unwritten then are left out of p50/p99 (which are then lower bounds)
    and the note says how many.
    """
    seconds = 5.0 if quick else 60.0
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-e2e-"))
    result = run_e2e(env, rate, seconds, work, sink)
    shutil.rmtree(work, ignore_errors=True)
    return [figure(result, rate)]


def figure(result: E2EResult, rate: int) -> BenchFigure:
    """The bench figure of one run offered at ``rate``/s, with its note."""
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in result.peak_rss_mb.items())
    hops = ", ".join(
        f"{hop} {p50 * 1000:.0f}/{p99 * 1000:.0f}" for hop, (_n, p50, p99) in result.hops.items()
    )
    t = result.tuning
    write = f"write {t.mongo_write}, " if result.sink == "mongodb" else ""
    note = (
        f"MariaDB -> source -> stage -> {_SINK_LABEL[result.sink]} ({write}sink batch "
        f"{t.sink_batch}, "
        f"linger {t.sink_linger}; source poll {t.poll}; worker batch {t.worker_batch}); "
        f"commit to seen in, p50/p99 ms: {hops or 'n/a'}; peak RSS MiB: {peaks}; "
        f"load average {result.load_1m:.1f}"
    )
    if result.backlog > 2 * rate:
        note += (
            f"; fell behind: {result.backlog} rows ({result.backlog / rate:.0f} s of input) "
            "not yet written when the last was inserted"
        )
    if result.written < result.rows:
        note += (
            f"; did not keep up: {result.written} of {result.rows} rows written by the end, "
            "percentiles are of those (lower bounds)"
        )
    return BenchFigure(
        f"e2e mysql->stage->{result.sink} @{rate}/s",
        result.rows,
        result.written_per_s,
        f"offered {rate}/s (steady inserts)",
        result.offered_per_s,
        max(result.peak_rss_mb.values(), default=0.0),
        p50_ms=None if result.p50_s is None else round(result.p50_s * 1000, 1),
        p99_ms=None if result.p99_s is None else round(result.p99_s * 1000, 1),
        note=note,
    )
