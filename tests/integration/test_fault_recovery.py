"""A sink survives its database going away and coming back, and says so (issue #19): the
retried writes are one ``database_unavailable`` fault, its recovery is counted and timed,
and `headrace status` shows it as the last fault, with no restart.

The database "outage" is our own: the sink's MongoDB URI points at a TCP port of this test
that refuses connections at first (nothing listens) and then forwards to the stack's FerretDB.
The stack's servers are never touched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from confluent_kafka import Producer
from pymongo import MongoClient
from pymongo.collection import Collection

from headrace_cli.status_view import collect, discover_targets

REPO = Path(__file__).resolve().parents[2]
RECORDS = 200
OUTAGE = 12.0  # seconds the port refuses connections after the sink started


class _Forwarder:
    """Listens on ``port`` once ``start`` is called and copies bytes both ways to ``target``."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self._server: socket.socket | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        if self._server is not None:
            self._server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def collection(mongo_uri: str, unique: str) -> Iterator[Collection[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    yield client["faulttest"][unique]
    client["faulttest"].drop_collection(unique)
    client.close()


def _wait(pred: Callable[[], bool], what: str, log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {limit:.0f}s; the sink's log:\n{log.read_text()[-4000:]}")


def test_a_database_outage_is_a_fault_recovered_from_without_a_restart(
    tmp_path: Path,
    stack_env: dict[str, str],
    kafka_bootstrap: str,
    mongo_uri: str,
    new_topic: Callable[..., str],
    unique: str,
    collection: Collection[dict[str, object]],
) -> None:
    topic = new_topic(".in", 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        key = f"o{i:04d}"
        producer.produce(topic, orjson.dumps({"order_id": key, "n": i}), key.encode())
    assert producer.flush(30) == 0

    real = urlsplit(mongo_uri)
    port = _free_port()
    forwarder = _Forwarder(port, (real.hostname or "127.0.0.1", real.port or 27017))
    uri = real._replace(
        netloc=real.netloc.replace(f"{real.hostname}:{real.port}", f"127.0.0.1:{port}")
    )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"name: {unique}\n"
        f"kafka: {{bootstrap_servers: '{kafka_bootstrap}'}}\n"
        f"topics: ['{topic}']\n"
        "sinks:\n"
        "  m:\n"
        "    type: mongodb\n"
        f"    from: '{topic}'\n"
        f"    uri: '{uri.geturl()}'\n"
        "    database: faulttest\n"
        f"    collection: {unique}\n"
        "    id: [order_id]\n"
        "    write: upsert\n"
        "metrics: {final_scrape: 0}\n"
    )
    targets = tmp_path / "targets"
    targets.mkdir()
    env = {**os.environ, **stack_env, "HEADRACE_PROMETHEUS_TARGETS": str(targets)}
    for name in ("HEADRACE_RESTARTS", "HEADRACE_LAST_EXIT"):
        env.pop(name, None)
    log = tmp_path / "sink.log"
    sink = subprocess.Popen(
        [sys.executable, "-m", "headrace_cli.main", "sink", "m", "-f", str(pipeline)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )
    try:
        _wait(lambda: "write failed" in log.read_text(), "the sink's write never failed", log, 40)
        time.sleep(max(0.0, OUTAGE - 10.0))
        forwarder.start()
        up = time.monotonic()
        _wait(
            lambda: collection.count_documents({}) == RECORDS,
            f"MongoDB did not get the {RECORDS} records once reachable",
            log,
            60,
        )
        written_after = time.monotonic() - up
        [view] = collect(discover_targets(targets), interval=0.2)
        assert view.process == "sink/m" and view.up
        assert view.restarts == 0
        assert view.last_fault is not None
        assert view.last_fault.fault == "database_unavailable"
        assert view.last_fault.took >= 10.0  # the failed call's own 10 s server selection at least
        status = subprocess.run(
            [sys.executable, "-m", "headrace_cli.main", "status", "--targets", str(targets)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=30,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        [row] = [r for r in status.stdout.splitlines() if "sink/m" in r]
        assert "database_unavailable" in row and "recovered in" in row, status.stdout
        print(
            f"recovery took {view.last_fault.took:.1f} s; records written "
            f"{written_after:.1f} s after the port opened"
        )
    finally:
        sink.terminate()
        try:
            sink.wait(30)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(10)
        forwarder.close()
