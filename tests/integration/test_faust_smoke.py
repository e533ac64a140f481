"""Faust on this Kafka: consumer group, changelog-backed table, recovery after a graceful restart.

``headrace_dev/faust_smoke.py`` counts records per key in a Table, once per store: memory (its
state can only come back from the changelog topic) and RocksDB (from the local store plus the
changelog after its persisted offset), and sends ``key -> str(count)`` to a sink topic. The test
runs it as a real worker process, stops it with SIGTERM between two batches, starts it again, and
checks the sink: per key the counts are exactly 1, 2, ..., total over both batches, one sink
record per source record. A table that did not recover would restart at 1; offsets that were
not committed (or records processed twice) would count past the total.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

PARTITIONS = 2
KEYS = ["alpha", "bravo", "charlie"]  # sent to partitions 0, 1, 0
BATCH_1 = {"alpha": 6, "bravo": 10, "charlie": 14}  # 30 records
BATCH_2 = {"alpha": 9, "bravo": 4, "charlie": 17}  # 30 records
PROGRESS_TIMEOUT = 60.0
STOP_TIMEOUT = 45.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


class Worker:
    """One ``python -m headrace_dev.faust_smoke`` process, its output appended to ``log``."""

    def __init__(self, argv: list[str], *, log: Path, env: dict[str, str], cwd: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            out.write(f"\n===== start: {' '.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> int | None:
        """SIGTERM and wait; return the exit code, or None if it hung (it is then killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def stop_or_fail(self, which: str) -> None:
        code = self.stop()
        if code is None:
            pytest.fail(
                f"{which} Faust worker did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM "
                f"(killed with SIGKILL)\nworker output tail:\n{_tail(self.log)}",
                pytrace=False,
            )
        assert code == 0, f"{which} Faust worker exited with {code}\n{_tail(self.log)}"


class SinkReader:
    """Reads the sink topic from the beginning (assigned partitions: no group, no commits)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        self.values: dict[str, list[str]] = defaultdict(list)
        self.positions: dict[int, int] = {}

    def poll(self, timeout: float = 0.5) -> None:
        for msg in self.consumer.consume(num_messages=1000, timeout=timeout):
            assert msg.error() is None, msg.error()
            key, value, partition, offset = msg.key(), msg.value(), msg.partition(), msg.offset()
            assert key is not None and value is not None
            assert partition is not None and offset is not None
            self.values[key.decode()].append(value.decode())
            self.positions[partition] = offset + 1

    def latest(self) -> dict[str, int]:
        return {k: int(v[-1]) for k, v in self.values.items() if v}

    def wait_for(self, totals: dict[str, int]) -> bool:
        """Poll until every key's latest count reached ``totals``; False after the timeout."""
        deadline = time.monotonic() + PROGRESS_TIMEOUT
        while time.monotonic() < deadline:
            self.poll()
            latest = self.latest()
            if all(latest.get(k, 0) >= n for k, n in totals.items()):
                return True
        return False

    def read_to_end(self) -> None:
        """Read everything up to the current high watermarks (call with the worker stopped)."""
        ends = {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
        deadline = time.monotonic() + PROGRESS_TIMEOUT
        while any(self.positions.get(p, 0) < end for p, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read the sink up to {ends}"
            self.poll()

    def close(self) -> None:
        self.consumer.close()


def _produce(bootstrap: str, topic: str, batch: dict[str, int]) -> dict[int, int]:
    """Send ``batch[key]`` records per key, interleaved, a key always to the same partition.

    Returns the source topic's end offsets afterwards.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    left = dict(batch)
    n = 0
    while any(left.values()):
        for i, key in enumerate(KEYS):
            if left[key]:
                producer.produce(
                    topic, key=key.encode(), value=f"{key}-{n}".encode(), partition=i % PARTITIONS
                )
                left[key] -= 1
                n += 1
    assert producer.flush(30) == 0, "source records not delivered within 30s"
    return _end_offsets(bootstrap, topic)


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.ends"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (-1001 = nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def _wait_for_log(log: Path, text: str, *, occurrences: int, timeout: float) -> bool:
    """True once ``text`` appears ``occurrences`` times in ``log`` (within ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= occurrences:
            return True
        time.sleep(0.2)
    return False


# memory://: the state can only come back from the changelog; rocksdb:// (the worker's
# default): from the local store plus the changelog past its offset
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_faust_counts_survive_a_graceful_restart(
    kafka_bootstrap, new_topic, unique, tmp_path, repo_root, store
):
    source = new_topic(".in", PARTITIONS)
    sink = new_topic(".out", PARTITIONS)
    app_id = unique  # the group id, and the prefix of Faust's internal topics
    log = tmp_path / "worker.log"
    env = dict(os.environ, HEADRACE_DATA_DIR=str(tmp_path / "faust-data"))  # not the repo root

    def start() -> Worker:
        argv = [
            sys.executable, "-m", "headrace_dev.faust_smoke",
            "--bootstrap", kafka_bootstrap,
            "--app-id", app_id,
            "--source", source,
            "--sink", sink,
            "--partitions", str(PARTITIONS),
            "--web-port", str(_free_port()),
            "--loglevel", "info",
            "--store", store,
        ]  # fmt: skip
        return Worker(argv, log=log, env=env, cwd=repo_root)

    totals = dict(Counter(BATCH_1) + Counter(BATCH_2))
    reader = SinkReader(kafka_bootstrap, sink, f"{unique}.reader")
    worker: Worker | None = None
    evidence: list[str] = []

    def fail(what: str) -> None:
        reader.poll()
        pytest.fail(
            f"{what}\nlatest count per key: {reader.latest()} (expected {totals})\n"
            + "\n".join(evidence)
            + f"\nsink values per key: {dict(reader.values)}"
            + f"\nworker output tail ({log}):\n{_tail(log)}",
            pytrace=False,
        )

    try:
        ends_1 = _produce(kafka_bootstrap, source, BATCH_1)
        worker = start()
        if not reader.wait_for(BATCH_1):
            fail(f"batch 1: the sink did not reach {BATCH_1} within {PROGRESS_TIMEOUT:.0f}s")
        worker.stop_or_fail("first")
        committed_1 = _committed(kafka_bootstrap, app_id, source)
        evidence.append(f"source end offsets after batch 1: {ends_1}")
        evidence.append(f"offsets committed by group {app_id!r} after 1st stop: {committed_1}")
        if committed_1 != ends_1:
            fail("the first worker's graceful stop did not commit every processed record")

        # Restart first, produce batch 2 once the worker is ready. Records that are already
        # waiting while Faust 0.15.3 restores a non-empty table are exposed to a recovery race
        # (it resumes the partitions before seeking them to the committed offsets, so some are
        # handed over twice: faust-streaming#596); this smoke test checks that the table state
        # comes back and that new records are counted exactly once on top of it.
        worker = start()
        if not _wait_for_log(log, "[^Worker]: Ready", occurrences=2, timeout=PROGRESS_TIMEOUT):
            fail("the restarted worker did not become ready")
        ends_2 = _produce(kafka_bootstrap, source, BATCH_2)
        evidence.append(f"source end offsets after batch 2: {ends_2}")
        reached = reader.wait_for(totals)
        worker.stop_or_fail("second")
        evidence.append(
            f"offsets committed after 2nd stop: {_committed(kafka_bootstrap, app_id, source)}"
        )
        if not reached:
            fail(
                f"batch 2 (restarted worker): the sink did not reach the totals within "
                f"{PROGRESS_TIMEOUT:.0f}s"
            )
        reader.read_to_end()

        expected = {k: [str(i) for i in range(1, n + 1)] for k, n in totals.items()}
        if dict(reader.values) != expected:
            fail("after the restart, the counts per key are not exactly 1..total")
        assert sum(len(v) for v in reader.values.values()) == sum(totals.values())
    finally:
        if worker is not None and worker.stop() is None:
            print(f"worker {worker.proc.pid} hung on SIGTERM during cleanup and was killed")
        reader.close()
