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
from fixtures.transactions import lags, write_transactions

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


def _write(bootstrap: str, topic: str, unique: str, start: int) -> int:
    return write_transactions(
        bootstrap, topic, f"{unique}-tx", start, TRANSACTIONS, PER_TRANSACTION
    )


def _wait_committed(bootstrap: str, group: str, topic: str, worker: WorkerProcess, log: Path):
    deadline = time.monotonic() + 60
    lags_now = lags(bootstrap, group, topic, PARTITIONS)
    while lags_now != [0] * PARTITIONS:
        assert worker.alive(), tail(log)
        assert time.monotonic() < deadline, f"lag per partition {lags_now}\n{tail(log)}"
        time.sleep(0.5)
        lags_now = lags(bootstrap, group, topic, PARTITIONS)


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
