"""A worker whose stage loop hangs, under `headrace run` (issue #19): its partitions have
lag and stop advancing, the watchdog exits the worker through Faust (``app.crash``: Faust
stops, commits what was acked, leaves the group and exits 1) naming the partition, the
supervisor restarts it, and the restarted worker transforms the rest exactly once.

The wedge: in the worker's first run (``HEADRACE_RESTARTS`` 0) a ``sitecustomize`` on
``PYTHONPATH`` makes the stage loop await forever on a batch of the second half of the
records (the event loop stays alive, so this is the clean-exit path; the sink's test covers a
call that blocks its thread, where the watchdog ends the process with ``os._exit``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parents[2]
RECORDS = 500

WEDGE = """
import asyncio, importlib.abc, importlib.machinery, json, os, pathlib, sys

_marker = os.environ.get("HEADRACE_TEST_WEDGE_MARKER")


def _patch(module):
    prepare = module.StageRunner._prepare
    first = int(os.environ["HEADRACE_TEST_WEDGE_FROM"])

    async def _hangs_on_the_second_half(self, records):
        if any(json.loads(r.value)["q"] >= first for r in records):
            pathlib.Path(_marker).write_text(str(len(records)))
            await asyncio.Event().wait()  # a stage that never finishes its batch
        return await prepare(self, records)

    module.StageRunner._prepare = _hangs_on_the_second_half


class _PatchOnImport(importlib.abc.MetaPathFinder):
    # patch streams.runner once the worker imports it (importing it here, at interpreter
    # start, would import Faust before the worker sets it up)
    def find_spec(self, name, path, target=None):
        if name != "streams.runner":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if _marker and os.environ.get("HEADRACE_RESTARTS") == "0":
    sys.meta_path.insert(0, _PatchOnImport())
"""


def _keys(bootstrap: str, topic: str) -> set[str]:
    """The keys of every message in ``topic`` now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-keys"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        keys: set[str] = set()
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    keys.add((msg.key() or b"").decode())
                    if (msg.offset() or 0) >= ends.get(msg.partition() or 0, 0) - 1:
                        ends.pop(msg.partition() or 0, None)
        return keys
    finally:
        consumer.close()


def _wait(pred: Callable[[], bool], what: str, log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} within {limit:.0f}s; run's log:\n{log.read_text()[-5000:]}")


def test_a_worker_whose_stage_hangs_is_exited_and_restarted(
    tmp_path: Path,
    stack_env: dict[str, str],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kafka_count: Callable[[str], int],
    unique: str,
) -> None:
    source = new_topic(".in", 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})

    def send(first: int, last: int) -> None:
        for i in range(first, last):
            key = f"o{i:04d}"
            producer.produce(source, orjson.dumps({"order_id": key, "q": i}), key.encode())
        assert producer.flush(30) == 0

    send(0, RECORDS // 2)

    out = f"{unique}.out"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"name: {unique}\n"
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}'}}\n"
        f"topics: ['{source}']\n"
        "stages:\n"
        "  double:\n"
        f"    from: '{source}'\n"
        f"    to: '{out}'\n"
        "    transform:\n"
        "      - set: {q2: 'q * 2'}\n"
        "metrics: {final_scrape: 0}\n"
        "watchdog: {unhealthy_after: 2s, exit_after: 6s, grace: 2s}\n"
    )
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WEDGE)
    marker = tmp_path / "wedged"
    env = {
        **os.environ,
        **stack_env,
        "PYTHONPATH": str(hook),
        "HEADRACE_TEST_WEDGE_MARKER": str(marker),
        "HEADRACE_TEST_WEDGE_FROM": str(RECORDS // 2),
        "HEADRACE_PROMETHEUS_TARGETS": str(tmp_path),
        "HEADRACE_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("HEADRACE_RESTARTS", "HEADRACE_LAST_EXIT"):
        env.pop(name, None)
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        [sys.executable, "-m", "headrace_cli.main", "run", "-f", str(pipeline)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        _wait(lambda: kafka_count(out) >= RECORDS // 2, "the first batch was not done", log, 60)
        send(RECORDS // 2, RECORDS)
        _wait(marker.exists, "no batch of the second half reached the stage", log, 30)
        wedged_at = time.monotonic()
        exited = f"[run] worker exited with 1 (worker of {unique}: no partition advanced for "
        _wait(lambda: exited in log.read_text(), "the supervisor saw no watchdog exit", log, 40)
        exit_seconds = time.monotonic() - wedged_at
        text = log.read_text()
        reason = text.split(exited, 1)[1].splitlines()[0]
        assert "stage double" in reason, reason  # names the stage (and its partition or input)
        assert "restart #1" in text
        assert "forced: a clean stop did not finish" not in text  # Faust stopped by itself
        _wait(
            lambda: kafka_count(out) >= RECORDS,
            f"the restarted worker did not transform the {RECORDS} records",
            log,
            90,
        )
        # every record transformed (at least once: a batch produced but not yet acked when
        # the stage hung is produced again after the restart)
        assert _keys(kafka_bootstrap, out) == {f"o{i:04d}" for i in range(RECORDS)}
        print(f"stage hung to exit: {exit_seconds:.1f} s (exit_after 6 s)")
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
