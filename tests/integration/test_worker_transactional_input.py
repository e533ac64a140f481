"""A worker reading a topic written in Kafka transactions (a source with ``exactly_once:
true``) commits up to the end of the topic, and does so batch by batch.

Every transaction ends with a commit marker: an offset with no record. Two defects held the
worker's committed offsets behind the topic's end (found while making the shop demo's MySQL
sources exactly-once, docs/chaos.md round 7):

- the marker *after the last record* was never acked (no later record revealed it), so every
  partition kept a lag of 1 forever and ``run --until-idle`` never finished;
- a marker *between* records was recorded as a gap that included the next record's offset,
  so Faust's commit (the first run of consecutive offsets) passed one marker per commit:
  with 30 transactions the commit took a minute to catch up with what was processed in a
  second.

The test writes small transactions (and an aborted one), runs a transform stage, and needs
the group's committed offsets at the high watermarks within 60 s, and again after a restart
that finds the committed offset pointing at the last marker.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from headrace.kafka_clients import watermarks
from streams.testing import TopicReader, WorkerProcess, tail

pytestmark = pytest.mark.integration

TRANSACTIONS = 30
PER_TRANSACTION = 4
PARTITIONS = 2

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{u}.in]
stages:
  double:
    from: {u}.in
    to: {u}.out
    transform:
      - set: {{y: "x * 2"}}
"""


def _lags(bootstrap: str, group: str, topic: str) -> list[int]:
    """Per partition: high watermark minus the group's committed offset (-1: none yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        lags = []
        for tp in consumer.committed(tps, timeout=10):
            _low, high = watermarks(consumer, tp, 10)
            lags.append(high - tp.offset if tp.offset >= 0 else -1)
        return lags
    finally:
        consumer.close()


def _write(bootstrap: str, topic: str, unique: str, start: int) -> int:
    """``TRANSACTIONS`` committed transactions and one aborted; the committed record count."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{unique}-tx"})
    producer.init_transactions(30)
    n = start
    for _ in range(TRANSACTIONS):
        producer.begin_transaction()
        for _ in range(PER_TRANSACTION):
            producer.produce(topic, orjson.dumps({"x": n}), key=str(n % 7).encode())
            n += 1
        producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, orjson.dumps({"x": -1}), key=b"aborted")
    producer.abort_transaction(30)
    return n - start


def _wait_committed(bootstrap: str, group: str, topic: str, worker: WorkerProcess, log: Path):
    deadline = time.monotonic() + 60
    lags = _lags(bootstrap, group, topic)
    while lags != [0] * PARTITIONS:
        assert worker.alive(), tail(log)
        assert time.monotonic() < deadline, f"lag per partition {lags}\n{tail(log)}"
        time.sleep(0.5)
        lags = _lags(bootstrap, group, topic)


@pytest.mark.timeout(400)
def test_commits_reach_the_end_of_a_topic_written_in_transactions(
    tmp_path: Path, repo_root: Path, kafka_bootstrap: str, new_topic: Any, unique: str
) -> None:
    topic = new_topic(".in", PARTITIONS)
    new_topic(".out", PARTITIONS)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(u=unique, bootstrap=kafka_bootstrap))
    group = f"{unique}-app"
    log = tmp_path / "worker.log"
    written = _write(kafka_bootstrap, topic, unique, 0)
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=["--app-id", group])
    try:
        out = TopicReader(kafka_bootstrap, f"{unique}.out")
        assert out.wait_until(lambda r: len(r.messages) >= written, 120), tail(log)
        _wait_committed(kafka_bootstrap, group, topic, worker, log)
    finally:
        assert worker.stop() == 0, tail(log)
    values = sorted(orjson.loads(m.value())["x"] for m in out.messages)
    assert values == list(range(written))  # nothing of the aborted transaction, no repeat
    # restarted with every committed offset on a partition's last marker: still at the end
    # after more transactions, and the restart does not read anything twice
    more = _write(kafka_bootstrap, topic, unique, written)
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=["--app-id", group])
    try:
        assert out.wait_until(lambda r: len(r.messages) >= written + more, 120), tail(log)
        _wait_committed(kafka_bootstrap, group, topic, worker, log)
    finally:
        assert worker.stop() == 0, tail(log)
    values = sorted(orjson.loads(m.value())["x"] for m in out.messages)
    assert values == list(range(written + more))
