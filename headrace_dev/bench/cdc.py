"""``headrace bench cdc``: the MySQL CDC source (``type: mysql_cdc``) against raw baselines, in
one run, on the same MariaDB table.

Figures (one ``BenchFigure`` each):

- ``cdc.snapshot``: an orders-like table (8 columns: BIGINT key, VARCHAR, DECIMAL, JSON, BLOB,
  DATETIME(6)) snapshotted into Kafka as envelope records (``op: r``), vs PyMySQL streaming
  ``SELECT *`` of the same rows in key order, read only (the source itself reads with
  mysqlclient, the C driver, when it is installed: ``connect_bulk``).
- ``cdc.stream``: changes from the binlog into Kafka (half updates in statements of 1,000 rows,
  half inserts), vs ``mysql-replication``'s ``BinLogStreamReader`` reading the same binlog
  range and decoding every row, without producing: the library's own ceiling.
- ``cdc.stream_lag``: a writer paced at ``LAG_RATE`` changes/s (inserts of 50 rows every
  10 ms, each row stamped with the server's ``UTC_TIMESTAMP(6)``) while the source streams;
  p50/p99 of the time from a row's stamp to a consumer reading its record from Kafka, and
  changes/s read against the writer's rate. The writer starts once the source finished its
  snapshot of the table and the consumer read it all (else the first rows' lag would be the
  snapshot's duration, and the consumer's backlog), only the writer's rows (their ids) are
  timed, and the consumer polls one message at a time (a batch ``consume`` waits to fill).

``quick`` uses small sizes (well under a minute); the full run a 1,000,000-row snapshot and
200,000 changes. Everything created is named ``hrbench<id>`` and deleted afterwards.
Debezium is not run here (its MySQL connector refuses MariaDB 10.11; the issue quotes its own
figures for orientation).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from headrace_dev.bench.common import BenchFigure, delete_run_topics, peak_rss_mb
from headrace_dev.bench.produce_data import create_orders_table

if TYPE_CHECKING:
    from headrace.config import Pipeline

__all__ = ["run"]

SIZES = {
    True: {"rows": 100_000, "changes": 40_000, "seconds": 6},
    False: {"rows": 1_000_000, "changes": 200_000, "seconds": 20},
}
LAG_RATE = 5_000
"""Changes per second the lag figure's writer aims at (the issue's 5,000)."""
FIRST_ID = 10_000_000_000
"""The lag figure's writer inserts ids from here on (the table's own are far below)."""


def _pipeline(env: dict[str, str], name: str, url: str, topic: str) -> Pipeline:
    from headrace.config import Pipeline

    return Pipeline.model_validate(
        {
            "name": name,
            "kafka": {"bootstrap_servers": env["HEADRACE_KAFKA_BOOTSTRAP"]},
            "sources": {
                "orders": {"type": "mysql_cdc", "url": url, "tables": ["orders"], "topic": topic}
            },
        }
    )


def _ours(pipeline: Pipeline) -> tuple[int, float]:
    """(records, records/s) of one pass of the source (the snapshot, or the binlog so far)."""
    from producers.build import build_runner

    runner, _ = build_runner(pipeline, "orders")
    progress = runner.run(once=True, poll_interval=0)
    elapsed = time.monotonic() - progress.started
    return progress.records, progress.records / elapsed if elapsed else 0.0


def _connect(url: str) -> Any:
    from producers.mysql_cdc_catalog import connect, connection_settings

    return connect(connection_settings(url))


def _head(conn: Any) -> tuple[str, int]:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return str(row[0]), int(row[1])


def _bench_snapshot(env: dict[str, str], run_id: str, url: str, rows: int) -> BenchFigure:
    import pymysql

    pipeline = _pipeline(env, run_id + "s", url, f"{run_id}.cdc")
    count, ours = _ours(pipeline)
    conn = _connect(url)
    try:
        start = time.perf_counter()
        n = 0
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute("SELECT * FROM orders ORDER BY id")
            while batch := cur.fetchmany(10_000):
                n += len(batch)
        raw = n / (time.perf_counter() - start)
    finally:
        conn.close()
    return BenchFigure(
        "cdc.snapshot",
        count,
        ours,
        "PyMySQL streaming SELECT * in key order (read only)",
        raw,
        peak_rss_mb(),
        note=f"{rows} rows, 8 columns, envelope records (op r); target >= 150,000 rows/s "
        "(Debezium 3.5 by the issue: 28k rows/s cold, 82k warm)",
    )


def _write_changes(url: str, changes: int) -> None:
    """Half updates (statements of 1,000 rows), half inserts of new ids (1,000 a statement)."""
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT MAX(id) FROM orders")
            top = int(cur.fetchone()[0] or 0)
            half = changes // 2
            for lo in range(1, half + 1, 1000):
                cur.execute(
                    "UPDATE orders SET status = 'paid', updated_at = UTC_TIMESTAMP(6) "
                    "WHERE id BETWEEN %s AND %s",
                    (lo, min(half, lo + 999)),
                )
            for lo in range(0, changes - half, 1000):
                n = min(1000, changes - half - lo)
                cur.execute(
                    "INSERT INTO orders (id, customer, price, status, meta, payload, note, "  # noqa: S608 - n is an int
                    "updated_at) SELECT seq + %s, 'c1', 9.99, 'new', NULL, NULL, NULL, "
                    f"UTC_TIMESTAMP(6) FROM seq_1_to_{int(n)}",
                    (top + lo,),
                )
    finally:
        conn.close()


def _raw_binlog(url: str, start: tuple[str, int], end: tuple[str, int]) -> tuple[int, float]:
    """(rows, rows/s) of ``BinLogStreamReader`` decoding the row events in [start, end)."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    from producers.mysql_cdc_catalog import connection_settings

    logging.getLogger("pymysqlreplication").setLevel(logging.WARNING)  # it logs its settings
    reader = BinLogStreamReader(
        connection_settings=connection_settings(url),
        server_id=6999,
        log_file=start[0],
        log_pos=start[1],
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        is_mariadb=False,
        freeze_schema=True,
    )
    rows = 0
    began = time.perf_counter()
    try:
        for ev in reader:
            if (reader.log_file, ev.packet.log_pos) > end:
                break
            rows += len(ev.rows)  # decodes every row
    finally:
        reader.close()
    return rows, rows / (time.perf_counter() - began)


def _bench_stream(env: dict[str, str], run_id: str, url: str, changes: int) -> BenchFigure:
    pipeline = _pipeline(env, run_id + "s", url, f"{run_id}.cdc")  # resumes after the snapshot
    conn = _connect(url)
    try:
        start = _head(conn)
        _write_changes(url, changes)
        end = _head(conn)
    finally:
        conn.close()
    count, ours = _ours(pipeline)
    raw_rows, raw = _raw_binlog(url, start, end)
    return BenchFigure(
        "cdc.stream",
        count,
        ours,
        "mysql-replication BinLogStreamReader decoding the same range (no Kafka)",
        raw,
        peak_rss_mb(),
        note=f"{changes} changes ({changes // 2} updates, the rest inserts; 1,000-row "
        f"statements), envelope records with before and after images; the baseline decoded "
        f"{raw_rows} rows; target >= 20,000 changes/s",
    )


def _bench_lag(env: dict[str, str], run_id: str, url: str, seconds: float) -> BenchFigure:
    """The source running, a writer paced at ``LAG_RATE``, a consumer timing each record."""
    from datetime import UTC, datetime

    import orjson
    from confluent_kafka import Consumer

    from producers.build import build_runner

    topic = f"{run_id}.lag"
    pipeline = _pipeline(env, run_id + "l", url, topic)
    runner, _ = build_runner(pipeline, "orders")
    thread = threading.Thread(
        target=lambda: runner.run(once=False, poll_interval=0.05), daemon=True
    )
    thread.start()
    consumer = Consumer(
        {
            "bootstrap.servers": env["HEADRACE_KAFKA_BOOTSTRAP"],
            "group.id": f"{run_id}-lag",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    lags: list[float] = []
    written = 0
    last = 0.0  # when the last record was read
    stop = threading.Event()

    def write() -> None:
        nonlocal written
        conn = _connect(url)
        next_id = FIRST_ID
        step = 0.01
        began = time.monotonic()
        with conn.cursor() as cur:
            while not stop.is_set():
                due = began + (written // 50 + 1) * step
                time.sleep(max(0.0, due - time.monotonic()))
                cur.execute(
                    "INSERT INTO orders (id, customer, price, status, meta, payload, note, "
                    "updated_at) SELECT seq + %s, 'c2', 1.00, 'new', NULL, NULL, NULL, "
                    "UTC_TIMESTAMP(6) FROM seq_1_to_50",
                    (next_id,),
                )
                next_id += 50
                written += 50
        conn.close()

    try:
        _read_snapshot(runner, consumer, topic)
        writer = threading.Thread(target=write, daemon=True)
        began = time.monotonic()
        writer.start()
        until = began + seconds
        while time.monotonic() < until + 5:
            # one message per poll: consume(n, timeout) returns only once it holds n messages
            # or the timeout passed, which added ~100 ms of waiting in the consumer to the lag
            msg = consumer.poll(0.2)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is not None:
                now = datetime.now(UTC).timestamp()
                after = orjson.loads(value).get("after") or {}
                if after.get("id", 0) >= FIRST_ID:  # the writer's
                    stamp = datetime.fromisoformat(after["updated_at"]).replace(tzinfo=UTC)
                    lags.append(now - stamp.timestamp())
                    last = time.monotonic()
            if time.monotonic() >= until:
                stop.set()
        elapsed = (last or time.monotonic()) - began  # writing, and reading the last record
    finally:
        stop.set()
        runner.stop()
        thread.join(30)
        consumer.close()
    lags.sort()
    p50 = statistics.median(lags) * 1000 if lags else None
    p99 = lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else None
    return BenchFigure(
        "cdc.stream_lag",
        len(lags),
        len(lags) / elapsed if elapsed else 0.0,
        f"the writer's pace ({LAG_RATE:,}/s aimed, 50-row inserts)",
        written / seconds,
        peak_rss_mb(),
        p50_ms=p50,
        p99_ms=p99,
        note=f"{seconds:g} s of paced inserts ({written} rows); ours: records read per second "
        "from the writer's start to the last record read; lag from the row's "
        "UTC_TIMESTAMP(6) to a consumer reading its record (the source, Kafka and the "
        "consumer's fetch); "
        "target p99 < 1 s at 5,000 changes/s",
    )


def _read_snapshot(runner: Any, consumer: Any, topic: str, timeout: float = 120.0) -> None:
    """Wait until the source streams and the broker acknowledged its snapshot (nothing left in
    the producer: every snapshot record was produced before the phase changed), then read the
    topic up to its end offsets with ``consumer``."""
    from confluent_kafka import TopicPartition

    deadline = time.monotonic() + timeout
    while runner.source.phase != "stream" or len(runner.producer) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the source did not finish its snapshot in {timeout:g} s")
        time.sleep(0.1)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in partitions
    }
    consumer.subscribe([topic])
    while time.monotonic() < deadline:
        consumer.consume(10_000, timeout=0.2)
        done = consumer.position([TopicPartition(topic, p) for p in partitions])
        if all(tp.offset >= ends[tp.partition] for tp in done if ends[tp.partition] > 0):
            return
    raise TimeoutError(f"the consumer did not read the snapshot in {timeout:g} s")


def run(env: dict[str, str], quick: bool) -> list[BenchFigure]:
    """Every CDC figure, measured against the stack named in ``env`` (``.stack/env``)."""
    from sqlalchemy import create_engine, text

    from headrace.gc_tuning import tune_gc

    tune_gc()  # as `headrace produce` does
    size = SIZES[quick]
    run_id = f"hrbench{uuid4().hex[:8]}"
    base = env["HEADRACE_MYSQL_URL"]
    root = create_engine(base)
    with root.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {run_id}"))
    url = base.rsplit("/", 1)[0] + f"/{run_id}"
    try:
        with create_engine(url).begin() as conn:
            create_orders_table(conn, "orders", size["rows"])
        return [
            _bench_snapshot(env, run_id, url, size["rows"]),
            _bench_stream(env, run_id, url, size["changes"]),
            _bench_lag(env, run_id, url, size["seconds"]),
        ]
    finally:
        with root.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {run_id}"))
        root.dispose()
        delete_run_topics(env, run_id)
