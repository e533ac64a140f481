"""Run generated cases for real: Kafka topics, a ``headrace worker`` process (killed with -9
and restarted when asked), the sinks' own runners (``connectors.build.build_sink``) writing
to FerretDB and moto; then compare every sink with SQL (``streamoracle.compare_stores``).

Several cases share one pipeline file, one worker and one run, so a worker's start-up is
paid once. Phases (``streamcase``) are produced one after the other, each once the worker's
consumer group has committed everything before it: that is what makes "late" well defined.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from simulate import advance, read_store
from streamcase import Case, Order, pipeline

from connectors.build import build_sink, group_id
from headrace.config import Pipeline, load_pipeline
from headrace.dlq import HEADER_STAGE
from headrace.kafka_clients import ensure_topics, make_producer, watermarks
from headrace_dev.stack import read_env_file
from schemas import encode_key

REPO = Path(__file__).resolve().parents[2]
HEADRACE = [sys.executable, "-m", "headrace_cli.main"]


def stack_env() -> dict[str, str]:
    stack = Path(os.environ.get("HEADRACE_STACK_DIR") or REPO / ".stack")
    return {**read_env_file(stack / "env"), **os.environ}


def merged(cases: list[Case], name: str) -> dict[str, Any]:
    """One pipeline file holding every case's source, stages and sinks."""
    data: dict[str, Any] = {"name": name, "kafka": {}, "sources": {}, "stages": {}, "sinks": {}}
    for case in cases:
        one = pipeline(case)
        data["kafka"] = one["kafka"]
        for section in ("sources", "stages", "sinks"):
            data[section].update(one[section])
    return data


class StackRun:
    """One run of ``cases`` on the local stack (see the module doc)."""

    def __init__(self, cases: list[Case], workdir: Path) -> None:
        self.cases = cases
        self.env = stack_env()
        self.name = f"oracle{cases[0].nonce}"
        self.file = workdir / "pipeline.yaml"
        self.file.write_text(yaml.safe_dump(merged(cases, self.name), sort_keys=False))
        self.pipe: Pipeline = load_pipeline(self.file, env=self.env)
        self.workdir = workdir
        self.worker: subprocess.Popen[bytes] | None = None
        self.sinks: list[tuple[Any, Callable[[], None], threading.Thread]] = []
        self.producer: Any = make_producer(self.pipe.kafka)
        self.admin = AdminClient({"bootstrap.servers": self.pipe.kafka.bootstrap_servers})

    # -- processes --------------------------------------------------------------------------

    def start_worker(self) -> None:
        log = (self.workdir / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [
                *HEADRACE,
                "worker",
                "-f",
                str(self.file),
                "--data-dir",
                str(self.workdir / "data"),
                "--idle-ms",
                "2000",
                "--loglevel",
                "error",
            ],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
        for runner, close, thread in self.sinks:
            runner.stop()
            thread.join(60)
            close()

    def start_sinks(self) -> None:
        for name in self.pipe.sinks:
            runner, close = build_sink(self.pipe, name)
            thread = threading.Thread(target=runner.run, name=f"sink-{name}", daemon=True)
            thread.start()
            self.sinks.append((runner, close, thread))

    # -- data -------------------------------------------------------------------------------

    def create_inputs(self) -> None:
        ensure_topics(self.pipe.kafka, {c.topic("in"): c.partitions for c in self.cases})

    def produce(self, case: Case, orders: list[Order]) -> None:
        topic = case.topic("in")
        for o in orders:
            key = None if o.key_value is None else encode_key(o.key_value)
            value = None if o.value is None else orjson.dumps(o.value)
            self.producer.produce(topic, value, key, timestamp=o.ts)
            self.producer.poll(0)
        left = self.producer.flush(30)
        assert left == 0, f"{left} records not acknowledged"

    def phase(self, phase: str, wave: tuple[int, int] = (0, 1)) -> None:
        """Produce ``phase`` of every case (``wave``: (i, n), the i-th of n slices of it)."""
        for case in self.cases:
            if phase == "adv":
                self.produce(case, advance(case, self._case_pipeline(case)))
            else:
                orders = [o for o in case.orders if o.phase == phase]
                i, n = wave
                size = -(-len(orders) // n)
                self.produce(case, orders[i * size : (i + 1) * size])

    def _case_pipeline(self, case: Case) -> Pipeline:
        from streamoracle import load

        return load(case, self.env)

    # -- waiting ----------------------------------------------------------------------------

    def _lag(self, group: str, topics: list[str]) -> int:
        consumer = Consumer(
            {"bootstrap.servers": self.pipe.kafka.bootstrap_servers, "group.id": group}
        )
        try:
            lag = 0
            for topic in topics:
                meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is None or meta.error is not None:
                    return -1  # not created yet
                tps = [TopicPartition(topic, p) for p in meta.partitions]
                committed = consumer.committed(tps, timeout=10)
                for tp in committed:
                    # a topic the worker just created may have no leader for a moment
                    _low, high = watermarks(consumer, tp, 10)
                    lag += high - max(tp.offset, 0)
            return lag
        finally:
            consumer.close()

    def worker_topics(self) -> list[str]:
        app = f"headrace-{self.name}"
        topics = []
        for name, stage in self.pipe.stages.items():
            topics.append(stage.from_)
            if stage.rank is not None:
                topics.append(f"{app}-{name}-by-partition")
            elif stage.aggregate is not None:
                found = self.admin.list_topics(timeout=10).topics
                if f"{app}-{name}-by-group" in found:
                    topics.append(f"{app}-{name}-by-group")
        return topics

    def wait_worker(self, timeout: float = 240.0) -> None:
        """Until the worker's group committed every message of every stage input."""
        deadline = time.monotonic() + timeout
        group = f"headrace-{self.name}"
        while True:
            self._check_worker_alive()
            if self._lag(group, self.worker_topics()) == 0:
                time.sleep(1.0)  # and once more: an internal topic may just have been written
                if self._lag(group, self.worker_topics()) == 0:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker still behind after {timeout:.0f}s; log: {self.workdir / 'worker.log'}"
                )
            time.sleep(1.0)

    def wait_sinks(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            behind = [
                n
                for n, s in self.pipe.sinks.items()
                if self._lag(group_id(self.pipe, n), [s.from_]) != 0
            ]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sinks still behind after {timeout:.0f}s: {behind}")
            time.sleep(1.0)

    def _check_worker_alive(self) -> None:
        if self.worker is not None and self.worker.poll() is not None:
            tail = (self.workdir / "worker.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"the worker exited ({self.worker.returncode}):\n{tail}")

    def dead_letters(self, topic: str, stage: str | None = None) -> list[bytes | None]:
        """Values of ``topic``'s DLQ (read from the start); with ``stage``, only the letters
        that stage or sink wrote (the ``headrace.stage`` header)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.pipe.kafka.bootstrap_servers,
                "group.id": f"oracle-dlq-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            meta = consumer.list_topics(topic + ".dlq", timeout=10).topics.get(topic + ".dlq")
            if meta is None or meta.error is not None:
                return []
            tps = [TopicPartition(topic + ".dlq", p, 0) for p in meta.partitions]
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
            consumer.assign(tps)
            values: list[bytes | None] = []
            read, total = 0, sum(ends.values())
            while read < total:
                for msg in consumer.consume(500, timeout=2):
                    if msg.error() is not None:
                        continue
                    read += 1
                    headers = dict(msg.headers() or [])
                    if stage is None or headers.get(HEADER_STAGE) == stage.encode():
                        values.append(msg.value())
            return values
        finally:
            consumer.close()


def run_cases(
    cases: list[Case], kill: bool, seed: int
) -> list[tuple[Case, Pipeline, dict[str, tuple[list[dict[str, Any]], list[str]]], int]]:
    """Run ``cases`` on the stack (``kill``: kill -9 the worker while it works on phase A and
    start it again); per case (case, its pipeline, sink name -> (stored rows, distinct dead
    letters of the sink's topic), distinct dead letters of the aggregate's input), for
    ``streamoracle.compare_stores``. The stores are dropped once read."""
    import random

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="headrace-oracle-") as tmp:
        run = StackRun(cases, Path(tmp))
        try:
            run.create_inputs()
            run.start_worker()
            # phase A in three waves, each processed before the next: running values
            # (emit: updates) change between them, so members leave rankings (tombstones)
            for wave in range(3):
                run.phase("A", wave=(wave, 3))
                if kill and wave == 1:
                    time.sleep(rng.uniform(0.5, 3.0))
                    run.kill_worker()
                    run.start_worker()
                run.wait_worker()
                if wave == 0:
                    run.start_sinks()  # their topics exist once the worker started
            run.phase("adv")
            run.wait_worker()
            run.phase("C")
            run.wait_worker()
            run.wait_sinks()
            results = []
            for case in cases:
                pipe = run._case_pipeline(case)
                agg_from = next(s.from_ for s in pipe.stages.values() if s.aggregate is not None)
                late = len({v for v in run.dead_letters(agg_from)})
                stores = {}
                for name, sink in pipe.sinks.items():
                    letters = run.dead_letters(sink.from_, stage=name)
                    rejected = [repr(v) for v in set(letters)]
                    stores[name] = (read_store(pipe, name, drop=True), rejected)
                results.append((case, pipe, stores, late))
            return results
        finally:
            run.stop()
