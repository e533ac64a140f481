"""Two stages of one worker read the same topic: each gets every record, commits wait for both.

The worker hands each fetched batch to both stages' loops; an input offset is committed only
once both stages acked it (``streams.consumer.BatchConsumer.ack_offsets``). After a graceful
stop, both outputs are complete and the group's committed offsets are at the input's end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from headrace.kafka_clients import produce_waiting
from streams.testing import TopicReader, WorkerProcess, free_port, tail

N = 600
PIPELINE = """
name: {u}
kafka: {{bootstrap_servers: "{bootstrap}"}}
topics: [{u}.in]
stages:
  evens:
    from: {u}.in
    to: {u}.evens
    transform:
      - filter: "n % 2 == 0"
  squares:
    from: {u}.in
    to: {u}.squares
    transform:
      - set: {{square: "n * n"}}
metrics: {{port: {metrics_port}}}
"""


def test_two_stages_on_one_topic_each_get_every_record(
    tmp_path: Path, repo_root: Path, kafka_bootstrap: str, new_topic: Any, unique: str
) -> None:
    source = new_topic(".in", 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i in range(N):
        produce_waiting(producer, source, orjson.dumps({"n": i}), f"k{i % 17}".encode())
    assert producer.flush(30) == 0
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        PIPELINE.format(u=unique, bootstrap=kafka_bootstrap, metrics_port=free_port())
    )
    log = tmp_path / "worker.log"
    group = f"{unique}-app"
    worker = WorkerProcess(pipeline, log=log, cwd=repo_root, args=["--app-id", group])
    try:
        stop = time.monotonic() + 120
        while worker.page("/readyz")[0] != 200:  # ready: its output topics exist
            assert worker.alive() and time.monotonic() < stop, tail(log)
            time.sleep(0.5)
        evens = TopicReader(kafka_bootstrap, f"{unique}.evens")
        squares = TopicReader(kafka_bootstrap, f"{unique}.squares")
        assert evens.wait_until(lambda r: len(r.messages) >= N // 2, 120), tail(log)
        assert squares.wait_until(lambda r: len(r.messages) >= N, 120), tail(log)
    finally:
        assert worker.stop() == 0, tail(log)

    assert sorted(orjson.loads(m.value())["n"] for m in evens.messages) == list(range(0, N, 2))
    got = {
        orjson.loads(m.value())["n"]: orjson.loads(m.value())["square"] for m in squares.messages
    }
    assert got == {i: i * i for i in range(N)}
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(source, p) for p in range(2)]
        committed = [tp.offset for tp in consumer.committed(tps, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    finally:
        consumer.close()
    assert committed == ends, (committed, ends)  # the stop committed what both stages acked
