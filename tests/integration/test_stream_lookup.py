"""The lookup join on the real stack: enrichment, missing keys, updates, restart, co-partitioning.

``customers`` (keyed by customer id) is the lookup topic; ``orders`` are enriched with the
customer's ``name`` and ``tier``; an order of an unknown customer goes to the DLQ
(``missing: dlq``). A customer updated later enriches later orders with the new value. After
a restart the lookup state comes back from the table's changelog (the customers topic itself
is not read again: its offsets are committed). After every topic of the pipeline was deleted
and made again (a reset, as ``headrace demo`` does), a restart knows only the new customers:
the local RocksDB store of the old run is dropped, not restored. A lookup topic with another
partition count than the stage's input stops the worker at start with exit code 2 and a
message naming both.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from headrace.kafka_clients import produce_waiting
from streams.testing import TopicReader, WorkerProcess, free_port, tail

DEADLINE_S = 120.0  # waits fail a hung run; nothing asserts on time
CUSTOMERS = {
    f"c{i:02d}": {"name": f"Customer {i}", "tier": "gold" if i % 3 else "silver"}
    for i in range(1, 13)
}

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{u}.orders, {u}.{customers}]
stages:
  enrich:
    from: {u}.orders
    to: {u}.enriched
    lookup: {{table_from: {u}.{customers}, on: [customer_id], fields: [name, tier], missing: dlq}}
metrics: {{port: {metrics_port}}}
"""


def _send(bootstrap: str, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        produce_waiting(producer, topic, orjson.dumps(value), key.encode())
    assert producer.flush(30) == 0


def _wait_committed(bootstrap: str, group: str, topic: str, log: Path) -> None:
    """Wait until ``group`` committed ``topic`` up to its end (the lookup has applied it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        stop = time.monotonic() + DEADLINE_S
        while True:
            done = [tp.offset for tp in consumer.committed(tps, timeout=10)]
            if all(d >= e for d, e in zip(done, ends, strict=True)):
                return
            assert time.monotonic() < stop, f"{group} committed {done} of {ends}\n{tail(log)}"
            time.sleep(0.5)
    finally:
        consumer.close()


def _order(i: int, customer: str) -> tuple[str, dict[str, Any]]:
    return customer, {"order_id": i, "customer_id": customer, "total": "9.50"}


def test_lookup_enriches_updates_survives_restart_and_dead_letters_missing(
    tmp_path: Path, repo_root: Path, kafka_bootstrap: str, new_topic: Any, unique: str
) -> None:
    orders = new_topic(".orders", 3)
    customers = new_topic(".customers", 3)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(
            u=unique, bootstrap=kafka_bootstrap, customers="customers", metrics_port=free_port()
        )
    )
    log = tmp_path / "worker.log"
    group = f"{unique}-app"
    args = ["--app-id", group]
    _send(kafka_bootstrap, customers, list(CUSTOMERS.items()))
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=args)
    try:
        _wait_committed(kafka_bootstrap, group, customers, log)
        first = [_order(i, f"c{i % 12 + 1:02d}") for i in range(60)]
        unknown = [_order(100 + i, f"x{i}") for i in range(3)]
        _send(kafka_bootstrap, orders, first + unknown)
        enriched = TopicReader(kafka_bootstrap, f"{unique}.enriched")
        assert enriched.wait_until(lambda r: len(r.messages) >= 60, DEADLINE_S), tail(log)
        _send(kafka_bootstrap, customers, [("c01", {"name": "Customer 1", "tier": "platinum"})])
        _wait_committed(kafka_bootstrap, group, customers, log)
        _send(kafka_bootstrap, orders, [_order(200, "c01")])
        assert enriched.wait_until(lambda r: len(r.messages) >= 61, DEADLINE_S), tail(log)
    finally:
        assert worker.stop() == 0, tail(log)

    # restart: the lookup state comes back from the changelog, not from the customers topic
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=args)
    try:
        _send(kafka_bootstrap, orders, [_order(300, "c01"), _order(301, "c02")])
        assert enriched.wait_until(lambda r: len(r.messages) >= 63, DEADLINE_S), tail(log)
    finally:
        assert worker.stop() == 0, tail(log)

    got = {}
    for m in enriched.messages:
        v = orjson.loads(m.value())
        got[v["order_id"]] = (v["customer_id"], v["name"], v["tier"], v["total"])
    expected = {}
    for i, (customer, _) in enumerate(first):
        expected[i] = (customer, CUSTOMERS[customer]["name"], CUSTOMERS[customer]["tier"], "9.50")
    expected[200] = ("c01", "Customer 1", "platinum", "9.50")
    expected[300] = ("c01", "Customer 1", "platinum", "9.50")
    expected[301] = ("c02", "Customer 2", CUSTOMERS["c02"]["tier"], "9.50")
    assert got == expected

    dlq = TopicReader(kafka_bootstrap, f"{unique}.orders.dlq")
    assert dlq.wait_until(lambda r: len(r.messages) >= len(unknown), 60)
    assert sorted(orjson.loads(m.value())["order_id"] for m in dlq.messages) == [100, 101, 102]
    for m in dlq.messages:
        headers = dict(m.headers())
        assert headers["headrace.stage"] == b"enrich"
        assert b"lookup" in headers["headrace.error.message"]


def _recreate(admin: AdminClient, unique: str, topics: dict[str, int]) -> None:
    """Delete every topic and consumer group named with ``unique``, then create ``topics``."""
    old = [t for t in admin.list_topics(timeout=10).topics if unique in t]
    for fut in admin.delete_topics(old, operation_timeout=30).values():
        fut.result(30)
    groups = admin.list_consumer_groups(request_timeout=10).result(timeout=15).valid
    ids = [g.group_id for g in groups if unique in g.group_id]
    for fut in admin.delete_consumer_groups(ids, request_timeout=30).values() if ids else []:
        fut.result(30)
    stop = time.monotonic() + DEADLINE_S
    while set(old) & set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < stop, f"Kafka did not delete {old}"
        time.sleep(0.5)
    new = [NewTopic(name, partitions, 1) for name, partitions in topics.items()]
    for fut in admin.create_topics(new).values():
        fut.result(30)


def test_a_reset_pipeline_does_not_get_the_old_lookup_state_back(
    tmp_path: Path,
    repo_root: Path,
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    new_topic: Any,
    unique: str,
) -> None:
    orders = new_topic(".orders", 3)
    customers = new_topic(".customers", 3)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(
            u=unique, bootstrap=kafka_bootstrap, customers="customers", metrics_port=free_port()
        )
    )
    log = tmp_path / "worker.log"
    group = f"{unique}-app"
    _send(kafka_bootstrap, customers, list(CUSTOMERS.items()))
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=["--app-id", group])
    try:
        _wait_committed(kafka_bootstrap, group, customers, log)
    finally:
        assert worker.stop() == 0, tail(log)

    _recreate(kafka_admin, unique, {orders: 3, customers: 3})
    # c01 again, c02 no more; more keys so that every partition has records to commit
    fresh = [("c01", {"name": "New 1", "tier": "bronze"})]
    fresh += [(f"z{i:02d}", {"name": f"Z {i}", "tier": "bronze"}) for i in range(30)]
    _send(kafka_bootstrap, customers, fresh)
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=["--app-id", group])
    try:
        _wait_committed(kafka_bootstrap, group, customers, log)
        _send(kafka_bootstrap, orders, [_order(1, "c01"), _order(2, "c02")])
        enriched = TopicReader(kafka_bootstrap, f"{unique}.enriched")
        dlq = TopicReader(kafka_bootstrap, f"{unique}.orders.dlq")
        assert enriched.wait_until(lambda r: len(r.messages) >= 1, DEADLINE_S), tail(log)
        assert dlq.wait_until(lambda r: len(r.messages) >= 1, DEADLINE_S), tail(log)
    finally:
        assert worker.stop() == 0, tail(log)
    assert [orjson.loads(m.value())["name"] for m in enriched.messages] == ["New 1"]
    assert [orjson.loads(m.value())["order_id"] for m in dlq.messages] == [2]  # c02 is gone


def test_lookup_topic_with_other_partition_count_stops_the_worker(
    tmp_path: Path, repo_root: Path, kafka_bootstrap: str, new_topic: Any, unique: str
) -> None:
    new_topic(".orders", 3)
    new_topic(".profiles", 2)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(
            u=unique, bootstrap=kafka_bootstrap, customers="profiles", metrics_port=free_port()
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "worker", "-f", str(pipeline)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    message = run.stderr.strip().splitlines()[-1]
    assert f"{unique}.profiles" in message and "2 partitions" in message, message
    assert f"{unique}.orders" in message and "has 3" in message, message
    assert "co-partitioned" in message, message
