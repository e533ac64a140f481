"""A worker restarted after its input ended still closes the windows it restores.

An aggregate's open windows live in its state; a restarted worker used to restore a
partition's state only when a record came to it. Killed after the last record (a backfill
done, a stream gone quiet), the new worker never restored those partitions, so their open
windows never closed by the idle timer: under ``headrace run --until-idle`` the last windows
were lost (found by ``headrace chaos``: the last window of every customer missing after a
worker kill -9 at the end of a round). Now the worker restores every partition it holds once
it is settled, and the timer runs for them.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from headrace.kafka_clients import produce_waiting, watermarks
from headrace_cli.status_view import scrape
from streams.testing import TopicReader, WorkerProcess, free_port, tail

pytestmark = pytest.mark.integration

MINUTE = 60_000
# a window an hour ago; the records in its last 30 s, so the idle timer (event time moving
# on with wall time once quiet) closes it a second after they stop
BASE_MS = (int(time.time() * 1000) - 60 * MINUTE) // MINUTE * MINUTE
RECORDS = 30

PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{u}.in]
stages:
  sums:
    from: {u}.in
    to: {u}.out
    aggregate:
      group_by: [k]
      window: {{type: tumbling, size: 1m, grace: 0s}}
      measures: {{n: count()}}
metrics: {{port: {port}}}
"""


def _applied(port: int) -> float:
    try:
        samples = scrape(f"127.0.0.1:{port}", 2.0)
    except OSError:
        return 0.0
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "headrace_records_total" and dict(labels).get("outcome") == "in"
    )


def _lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages of ``topics`` the group has not committed (-1: not known yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        lag = 0
        for name in topics:
            meta = consumer.list_topics(name, timeout=10).topics.get(name)
            if meta is None or meta.error is not None:
                return -1
            tps = [TopicPartition(name, p) for p in meta.partitions]
            for tp in consumer.committed(tps, timeout=10):
                _low, high = watermarks(consumer, tp, 10)
                lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


@pytest.mark.timeout(600)
def test_a_worker_killed_after_the_last_record_still_closes_the_open_windows(
    tmp_path: Path, repo_root: Path, kafka_bootstrap: str, new_topic: Any, unique: str
) -> None:
    topic = new_topic(".in", 3)
    port = free_port()
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(PIPELINE.format(u=unique, bootstrap=kafka_bootstrap, port=port))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i in range(RECORDS):
        key = f"k{i % 3}"
        value = orjson.dumps({"k": key, "i": i})
        produce_waiting(producer, topic, value, key.encode(), timestamp=BASE_MS + 30_000 + i * 1000)
    assert producer.flush(60) == 0
    log = tmp_path / "worker.log"
    args = ["--app-id", f"{unique}-app"]
    # the first worker never closes a window by the clock: they stay open in its state
    first = WorkerProcess(pipeline, log=log, cwd=repo_root, args=[*args, "--idle-ms", "3600000"])
    deadline = time.monotonic() + 180
    while _applied(port) < RECORDS:
        assert first.alive() and time.monotonic() < deadline, tail(log)
        time.sleep(0.5)
    # killed only once its offsets are committed: no record is delivered again after it
    group = f"{unique}-app"
    topics = [topic, f"{group}-sums-by-group"]
    while _lag(kafka_bootstrap, group, topics) != 0:
        assert first.alive() and time.monotonic() < deadline, tail(log)
        time.sleep(0.5)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    # no record will come again; the restarted worker closes them after 1 s of quiet
    second = WorkerProcess(pipeline, log=log, cwd=repo_root, args=[*args, "--idle-ms", "1000"])
    try:
        out = None
        while out is None:
            assert time.monotonic() < deadline + 120, tail(log)
            try:
                out = TopicReader(kafka_bootstrap, f"{unique}.out")
            except KeyError:
                time.sleep(1.0)
        closed = out.wait_until(lambda r: len(r.messages) >= 3, 180)
        assert closed, f"{len(out.messages)} of 3 windows closed\n{tail(log)}"
        counts = {orjson.loads(m.value())["k"]: orjson.loads(m.value())["n"] for m in out.messages}
        assert counts == {"k0": 10, "k1": 10, "k2": 10}
    finally:
        assert second.stop() == 0, tail(log)
