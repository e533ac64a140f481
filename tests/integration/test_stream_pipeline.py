"""A pipeline with every stage type on the real stack, checked against MariaDB, across kill -9.

Orders (``HEADRACE_TEST_SCALE`` x 20,000: the shared multiplier, 1 = the CI default of 20,000
orders; ``HEADRACE_TEST_SCALE=5`` is the issue's 100,000) go through four stages in one worker:

- ``clean``: filter quantity > 0, cast price to decimal, total = price * quantity; a poison
  order (price "n/a") goes to the DLQ;
- ``tagged``: a second records stage (sets a field): what ``clean`` sends again after the
  kill reaches ``revenue`` through it, at new offsets of ``tagged``'s input, and must still
  be recognized as a repeat (before, each records stage named only its own input position,
  and a chain of two let a replay be counted twice);
- ``revenue``: 10 s tumbling windows per customer, grace 2 s: sum/count/max/avg/count_distinct;
  late orders (beyond grace) go to the DLQ with their lateness;
- ``top``: dense_rank of customers by revenue per window, top 5, upserts + tombstones.

The same accepted orders are loaded into MariaDB, and the expected windows and ranks are
computed there with GROUP BY and DENSE_RANK() OVER (...). Mid-stream, the worker gets SIGKILL
at the worst moment for the windows: right after the broker acknowledged the first windows
``revenue`` closed and before the tombstones of their ``closed`` state entries (the worker
runs under ``_CRASH_HOOK``, which kills its own process there, so the test does not depend on
the timing of a kill from outside). Restarted, the results must equal SQL exactly: every
window once, with SQL's values (the restart reads the output topic back and does not send
again what is already there: see ``streams.stages.aggregate``), the compacted top topic
holding exactly the SQL top 5 with the same ranks.

What a kill -9 may still leave: a poison order dead-lettered twice, identically (the stateless
``clean`` stage re-reads what it had not committed: dead letters are at-least-once).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pymysql
import pytest
from confluent_kafka import Producer

from headrace.kafka_clients import produce_waiting
from streams.testing import TopicReader, WorkerProcess, tail

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)
N_ORDERS = max(1000, int(20_000 * SCALE))
CUSTOMERS = 40
# an hour ago, on a window boundary: recent, so broker retention (7 days by event time)
# never deletes the test's data while it runs
BASE_MS = (int(time.time() * 1000) - 3_600_000) // 10_000 * 10_000
STEP_MS = 4  # event time advances 4 ms per order: 20,000 orders span 80 s (8 windows)
LATE = 7
DEADLINE_S = 240.0 * max(1.0, SCALE)  # waits fail a hung run; nothing asserts on time

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{u}.orders]
stages:
  clean:
    from: {u}.orders
    to: {u}.clean
    transform:
      - filter: "quantity > 0"
      - cast: {{price: decimal}}
      - set: {{total: "price * quantity"}}
  # a second records stage: a replay of `clean` after the kill reaches `revenue` through it
  tagged:
    from: {u}.clean
    to: {u}.tagged
    transform:
      - set: {{tagged: "true"}}
  revenue:
    from: {u}.tagged
    to: {u}.revenue
    aggregate:
      group_by: [customer_id]
      window: {{type: tumbling, size: 10s, grace: 2s}}
      measures:
        revenue: sum(total)
        orders: count()
        largest: max(total)
        mean: avg(total)
        skus: count_distinct(sku)
  top:
    from: {u}.revenue
    to: {u}.top
    rank:
      partition_by: [window_start]
      order_by: ["revenue desc"]
      function: dense_rank
      limit: 5
metrics: {{port: {metrics_port}}}
"""

_CRASH_HOOK = """
import os, signal, sys
from headrace_cli.main import main
from streams.runner import StageRunner

persist = StageRunner._persist


async def persist_or_crash(self, writes):
    # the tombstones of closed windows, after their outputs were acknowledged: SIGKILL
    if (
        self.labels[1] == os.environ["CRASH_STAGE"]
        and writes
        and all(key[0] == "w" and value is None for key, value in writes)
    ):
        os.kill(os.getpid(), signal.SIGKILL)
    await persist(self, writes)


StageRunner._persist = persist_or_crash
sys.exit(main())
"""


def _orders() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(accepted orders, poison orders, late orders), deterministic."""
    rnd = random.Random(4)
    good, poison, late = [], [], []
    for i in range(N_ORDERS):
        jitter = rnd.randint(0, 1500)  # out of order by up to 1.5 s: within the 2 s grace
        order = {
            "order_id": i,
            "customer_id": f"c{rnd.randint(1, CUSTOMERS):03d}",
            "sku": f"s{rnd.randint(1, 12)}",
            "quantity": rnd.randint(0, 3),
            "price": f"{rnd.randint(1, 400) / 4:.2f}",  # many equal totals: ties in the ranking
            "ts": BASE_MS + i * STEP_MS - jitter
            if i * STEP_MS >= jitter
            else BASE_MS + i * STEP_MS,
        }
        if i % 997 == 5:
            order["price"] = "n/a"
            order["quantity"] = 1
            poison.append(order)
        else:
            good.append(order)
    for j in range(LATE):
        late.append(
            {
                "order_id": N_ORDERS + j,
                "customer_id": f"c{j + 1:03d}",
                "sku": "s1",
                "quantity": 1,
                "price": "1.00",
                "ts": BASE_MS + j,
            }
        )
    return good, poison, late


def _produce(bootstrap: str, topic: str, orders: list[dict[str, Any]]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    for o in orders:
        value = {k: v for k, v in o.items() if k != "ts"}
        produce_waiting(
            producer, topic, orjson.dumps(value), o["customer_id"].encode(), timestamp=o["ts"]
        )
    assert producer.flush(60) == 0


def _sql_expected(
    mysql_url: str, db: str, orders: list[dict[str, Any]]
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    from urllib.parse import urlsplit

    u = urlsplit(mysql_url.replace("mysql+pymysql", "mysql"))
    conn = pymysql.connect(
        host=u.hostname,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"USE `{db}`")
            cur.execute(
                "CREATE TABLE orders (order_id INT PRIMARY KEY, customer_id VARCHAR(8), "
                "sku VARCHAR(8), quantity INT, price DECIMAL(10,2), ts BIGINT)"
            )
            cur.executemany(
                "INSERT INTO orders VALUES (%s,%s,%s,%s,%s,%s)",
                [
                    (o["order_id"], o["customer_id"], o["sku"], o["quantity"], o["price"], o["ts"])
                    for o in orders
                ],
            )
            windows_sql = (
                "SELECT customer_id, FLOOR(ts / 10000) * 10000 AS window_start, "
                "SUM(price * quantity) AS revenue, COUNT(*) AS orders, "
                "MAX(price * quantity) AS largest, COUNT(DISTINCT sku) AS skus, "
                "SUM(price * quantity) / COUNT(*) AS mean "
                "FROM orders WHERE quantity > 0 GROUP BY customer_id, window_start"
            )
            cur.execute(windows_sql)
            windows = {
                (c, int(ws)): (Decimal(rev), n, Decimal(mx), skus, Decimal(mean))
                for c, ws, rev, n, mx, skus, mean in cur.fetchall()
            }
            cur.execute(
                "SELECT customer_id, window_start, revenue, rnk FROM ("
                "SELECT customer_id, window_start, revenue, DENSE_RANK() OVER "
                "(PARTITION BY window_start ORDER BY revenue DESC) AS rnk FROM ("
                + windows_sql
                + ") w) r WHERE rnk <= 5"
            )
            ranks = {(int(ws), c): (int(rnk), Decimal(rev)) for c, ws, rev, rnk in cur.fetchall()}
            cur.execute(f"DROP DATABASE `{db}`")
        return windows, ranks
    finally:
        conn.close()


@pytest.mark.soak  # N_ORDERS through three stages, the worker killed twice: ~1-2 minutes
@pytest.mark.timeout(int(600 * max(1.0, SCALE)))
def test_all_stage_types_equal_sql_across_kill_9(
    tmp_path: Path,
    repo_root: Path,
    kafka_bootstrap: str,
    mysql_url: str,
    new_topic: Any,
    unique: str,
) -> None:
    from streams.testing import free_port

    orders_topic = new_topic(".orders", 3)
    good, poison, late = _orders()
    windows, ranks = _sql_expected(mysql_url, unique, good)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(u=unique, bootstrap=kafka_bootstrap, metrics_port=free_port())
    )
    log = tmp_path / "worker.log"
    args = ["--app-id", f"{unique}-app", "--batch-size", "2000"]

    everything = sorted(good + poison, key=lambda o: o["order_id"])
    half = len(everything) // 2
    _produce(kafka_bootstrap, orders_topic, everything[:half])
    (tmp_path / "crash_hook.py").write_text(_CRASH_HOOK)
    hook_env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "CRASH_STAGE": "revenue",
    }
    worker = WorkerProcess(
        pipeline, log=log, cwd=repo_root, args=args, module="crash_hook", env=hook_env
    )
    revenue = (
        TopicReader(kafka_bootstrap, f"{unique}.revenue")
        if _wait_topic(kafka_bootstrap, f"{unique}.revenue")
        else None
    )
    assert revenue is not None, tail(log)
    # mid-stream, the worker kills itself (SIGKILL) once the first windows are out
    stop = time.monotonic() + DEADLINE_S
    while worker.alive() and time.monotonic() < stop:
        time.sleep(0.2)
    assert worker.proc.poll() == -signal.SIGKILL, tail(log)
    revenue.read_to_end()
    assert revenue.messages, "the windows of the batch that crashed were acknowledged"
    _produce(kafka_bootstrap, orders_topic, everything[half:])
    _produce(kafka_bootstrap, orders_topic, late)
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=args)
    try:
        # all windows close by the idle timer once the stream stops
        assert revenue.wait_until(lambda r: len(r.messages) >= len(windows), DEADLINE_S), (
            f"{len(revenue.messages)} of {len(windows)} windows\n{tail(log)}"
        )
        top = TopicReader(kafka_bootstrap, f"{unique}.top")
        assert top.wait_until(lambda r: len(r.latest()) == len(ranks), DEADLINE_S), tail(log)
        dlq_clean = TopicReader(kafka_bootstrap, f"{unique}.orders.dlq")
        dlq_revenue = TopicReader(kafka_bootstrap, f"{unique}.tagged.dlq")
        dlq_clean.wait_until(lambda r: len(r.messages) >= len(poison), 60)
        dlq_revenue.wait_until(lambda r: len(r.messages) >= len(late), 60)
    finally:
        code = worker.stop()
    assert code == 0, tail(log)
    for reader in (revenue, top, dlq_clean, dlq_revenue):
        reader.read_to_end()

    # every window equal to SQL, emitted once across the kill -9
    twice = [k for k, n in Counter(m.key() for m in revenue.messages).items() if n > 1]
    assert not twice, f"{len(twice)} windows emitted twice, e.g. {twice[:3]}"
    got = {}
    for m in revenue.messages:
        v = orjson.loads(m.value())
        got[(v["customer_id"], v["window_start"])] = (
            Decimal(v["revenue"]),
            v["orders"],
            Decimal(v["largest"]),
            v["skus"],
            Decimal(v["mean"]),
        )
    assert set(got) == set(windows)
    for k, (rev, n, mx, skus, mean) in windows.items():
        g = got[k]
        assert g[:4] == (rev, n, mx, skus), k
        assert abs(g[4] - mean) < Decimal("0.0001"), k  # MariaDB rounds AVG to 4+ digits

    # the compacted top topic is exactly SQL's DENSE_RANK() <= 5
    state = {}
    for value in top.latest().values():
        v = orjson.loads(value)
        state[(v["window_start"], v["customer_id"])] = (v["rank"], Decimal(v["revenue"]))
    assert state == ranks

    # dead letters: the poison orders from clean (at-least-once across the kill: a repeat is
    # the same dead letter, same input position), the late ones once, with their lateness
    letters: dict[int, tuple[bytes, Any]] = {}
    for m in dlq_clean.messages:
        letter = (m.value(), dict(m.headers()).get("headrace.position"))
        order_id = orjson.loads(m.value())["order_id"]
        assert letters.setdefault(order_id, letter) == letter, order_id
    assert sorted(letters) == sorted(o["order_id"] for o in poison)
    late_ids = sorted(orjson.loads(m.value())["order_id"] for m in dlq_revenue.messages)
    assert late_ids == [o["order_id"] for o in late]
    for m in dlq_revenue.messages:
        headers = dict(m.headers())
        assert headers["headrace.stage"] == b"revenue"
        assert int(headers["headrace.lateness_ms"]) > 0


def _wait_topic(bootstrap: str, topic: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    stop = time.monotonic() + 60
    while time.monotonic() < stop:
        if topic in admin.list_topics(timeout=10).topics:
            return True
        time.sleep(0.5)
    return False
