"""A sink whose write never returns, under `headrace run` (issue #19): the stall watchdog makes
it unhealthy, then exits it naming what was stuck, the supervisor restarts it, the restarted
sink writes everything, and `headrace status` shows the restart and why.

The wedge is real: in the sink's first run (``HEADRACE_RESTARTS`` 0, which `headrace run`
passes) a ``sitecustomize`` on ``PYTHONPATH`` replaces ``MongoWriter.write`` with a call that
blocks forever, so the sink's main thread is stuck inside a call and only the watchdog's own
thread can end the process (with ``os._exit``: a clean stop cannot finish). The restarted run
writes to the stack's MongoDB normally. Short timeouts from the pipeline file's
``watchdog:`` keep it to ~20 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from pymongo import MongoClient
from pymongo.collection import Collection

from headrace_cli.status_view import collect, discover_targets

REPO = Path(__file__).resolve().parents[2]
RECORDS = 300

WEDGE = """
import os, pathlib, threading
_marker = os.environ.get("HEADRACE_TEST_WEDGE_MARKER")
if _marker and os.environ.get("HEADRACE_RESTARTS") == "0":
    import connectors.mongodb_writer as _mw

    def _write_never_returns(self, batch):
        pathlib.Path(_marker).write_text(str(len(batch)))
        threading.Event().wait()  # a database call that never answers

    _mw.MongoWriter.write = _write_never_returns
"""


@pytest.fixture
def collection(mongo_uri: str, unique: str) -> Iterator[Collection[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    yield client["watchdogtest"][unique]
    client["watchdogtest"].drop_collection(unique)
    client.close()


def _wait(pred: Callable[[], bool], what: str, log: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {limit:.0f}s; run's log:\n{log.read_text()[-4000:]}")


def _healthz(folder: Path) -> tuple[int, dict[str, object]] | None:
    """The sink's /healthz (through its target file), or None when it is not serving."""
    for _label, address in discover_targets(folder):
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=1) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            continue
    return None


def test_a_wedged_sink_is_reported_exited_and_restarted(
    tmp_path: Path,
    stack_env: dict[str, str],
    kafka_bootstrap: str,
    mongo_uri: str,
    new_topic: Callable[..., str],
    unique: str,
    collection: Collection[dict[str, object]],
) -> None:
    topic = new_topic(".in", 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        key = f"o{i:04d}"
        producer.produce(topic, orjson.dumps({"order_id": key, "n": i}), key.encode())
    assert producer.flush(30) == 0

    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"name: {unique}\n"
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}', client: "
        "{session.timeout.ms: 6000, heartbeat.interval.ms: 1000}}\n"
        f"topics: ['{topic}']\n"
        "sinks:\n"
        "  m:\n"
        "    type: mongodb\n"
        f"    from: '{topic}'\n"
        f"    uri: '{mongo_uri}'\n"
        "    database: watchdogtest\n"
        f"    collection: {unique}\n"
        "    id: [order_id]\n"
        "    write: upsert\n"
        "metrics: {final_scrape: 0}\n"
        "watchdog: {unhealthy_after: 2s, exit_after: 6s, grace: 2s}\n"
    )
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WEDGE)
    marker = tmp_path / "wedged"
    targets = tmp_path / "targets"
    targets.mkdir()
    env = {
        **os.environ,
        **stack_env,
        "PYTHONPATH": str(hook),
        "HEADRACE_TEST_WEDGE_MARKER": str(marker),
        "HEADRACE_PROMETHEUS_TARGETS": str(targets),
    }
    env.pop("HEADRACE_RESTARTS", None)
    log = tmp_path / "run.log"
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "headrace_cli.main", "run", "-f", str(pipeline)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    try:
        _wait(marker.exists, "the first run's write was not entered", log)
        wedged_at = time.monotonic()

        # unhealthy (with the reason) while wedged, before the exit
        seen: list[dict[str, object]] = []

        def unhealthy() -> bool:
            answer = _healthz(targets)
            if answer is not None and answer[0] == 503:
                seen.append(answer[1])
            return bool(seen)

        _wait(unhealthy, "the wedged sink's /healthz never said unhealthy", log, limit=10)
        reason = str(seen[0]["reason"])
        assert reason.startswith("sink m: no batch committed for "), reason
        assert f"records are pending on {topic}[" in reason

        # the watchdog exits it (os._exit: the main thread is stuck) and run restarts it
        exited = "[run] sink:m exited with 1 (sink m: no batch committed for "
        _wait(lambda: exited in log.read_text(), "the supervisor saw no watchdog exit", log, 30)
        exit_seconds = time.monotonic() - wedged_at
        text = log.read_text()
        assert "exiting so the supervisor restarts it" in text
        assert "restart #1" in text

        # the restarted sink writes every record
        _wait(
            lambda: collection.count_documents({}) == RECORDS,
            f"MongoDB did not get the {RECORDS} records after the restart",
            log,
        )
        assert 0 < int(marker.read_text()) <= RECORDS  # the batch the wedged run held

        # headrace status: one restart, why it happened, healthy now
        [view] = collect(discover_targets(targets), interval=0.2)
        assert view.process == "sink/m"
        assert view.restarts == 1
        assert view.last_exit is not None
        assert view.last_exit.startswith("exit 1: sink m: no batch committed for "), view.last_exit
        assert view.healthy is True
        status = subprocess.run(
            [sys.executable, "-m", "headrace_cli.main", "status", "--targets", str(targets)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        header, *rows = status.stdout.splitlines()
        assert "restarts" in header and "last fault" in header
        [row] = [r for r in rows if "sink/m" in r]
        assert "1 (exit 1)" in row and " ok " in row, status.stdout
        print(
            f"wedge to exit: {exit_seconds:.1f} s (exit_after 6 s + grace 2 s); "
            f"whole test: {time.monotonic() - started:.1f} s"
        )
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
