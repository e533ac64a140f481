"""The gateway as a process against real Kafka.

- On the stack's broker: records POSTed as one record, an array, JSON lines and Avro are on
  their topics at the partitions and offsets the answers reported, keyed and timestamped as
  declared; rejected records are in ``<topic>.dlq``; an Idempotency-Key retry writes nothing
  twice; SIGTERM under load exits 0 after every acknowledged record was answered.
- On a private single-node broker (the stack's Kafka component with its own paths and
  ports; the shared broker is never stopped): the broker is killed mid-run, the gateway
  answers 503 with Retry-After at once while it is away, no record it accepted is lost, and
  it accepts again by itself once the broker is back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from headrace_dev.stack.kafka import Kafka
from headrace_dev.stack.paths import StackPaths
from schemas import LocalRegistry, RecordCodec

ORDER_SCHEMA = {
    "type": "object",
    "required": ["id", "qty"],
    "properties": {"id": {"type": "integer"}, "qty": {"type": "integer", "minimum": 1}},
}
AVRO_ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "qty", "type": "int"}],
}
PRIVATE_BROKER_BUDGET = 40.0


def _free_port(pair: bool = False) -> int:
    """A free port (and, with ``pair``, its successor free too: Kafka's controller)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        try:
            with socket.socket() as t:
                t.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    seconds: float


def post(url: str, body: bytes, kind: str = "application/json", **headers: str) -> Answer:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": kind, **headers}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, data, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, data, got = exc.code, exc.read(), dict(exc.headers)
    return Answer(status, json.loads(data), got, time.monotonic() - started)


def _pipeline(tmp_path: Path, bootstrap: str, port: int, topics: dict[str, Any], **gw: Any) -> Path:
    data = {
        "name": "gwtest",
        "kafka": {"bootstrap_servers": bootstrap},
        "metrics": {"final_scrape": 0},
        "gateway": {"port": port, "topics": topics, **gw},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def url(self, topic: str) -> str:
        return f"{self.base}/topics/{topic}/records"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _start(repo_root: Path, pipeline: Path, port: int, tmp_path: Path) -> Process:
    log = tmp_path / f"gateway-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "headrace_cli.main", "gateway", str(pipeline)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=repo_root,
            env={k: v for k, v in os.environ.items() if k != "HEADRACE_PROMETHEUS_TARGETS"},
        )
    gw = Process(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the gateway exited {proc.returncode}:\n{gw.tail()}"
        try:
            with urllib.request.urlopen(f"{gw.base}/healthz", timeout=2) as r:
                if r.status == 200:
                    return gw
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the gateway did not answer /healthz within 60 s:\n{gw.tail()}")


@pytest.fixture
def gateway_process(repo_root: Path, tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for gw in started:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait(10)


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic`` (committed ones), read up to the high watermarks."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"gwtest-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 0,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
                continue
            # the consumer's position passes transaction markers too (read_committed)
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions if ends[tp.partition]):
                break
        return out
    finally:
        consumer.close()


def _by_position(messages: list[Any]) -> dict[tuple[int, int], Any]:
    return {(m.partition(), m.offset()): m for m in messages}


def test_records_land_where_the_answers_say(
    repo_root: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique: str,
    gateway_process: list[Process],
) -> None:
    orders, events, avro = f"{unique}.orders", f"{unique}.events", f"{unique}.avro"
    ledger = f"{unique}.ledger"
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "order.avsc").write_text(json.dumps(AVRO_ORDER))
    port = _free_port()
    pipeline = _pipeline(
        tmp_path,
        kafka_bootstrap,
        port,
        {
            orders: {"key": "id", "time": "ts", "schema": ORDER_SCHEMA},
            events: {},
            avro: {"key": "id", "format": "avro", "schema": "order"},
            ledger: {"key": "id", "schema": ORDER_SCHEMA, "atomic": True},
        },
    )
    gw = _start(repo_root, pipeline, port, tmp_path)
    gateway_process.append(gw)

    single = post(gw.url(orders), b'{"id": 1, "qty": 2, "ts": "2026-01-01T00:00:00Z"}')
    assert single.status == 200, single.body
    batch = [
        {"id": i, "qty": 0 if i == 5 else 1, "ts": 1_700_000_000_000 + i} for i in range(2, 12)
    ]
    array = post(gw.url(orders), json.dumps(batch).encode())
    assert array.status == 207, array.body
    assert (array.body["accepted"], array.body["rejected"]) == (9, 1)
    jsonl = b"".join(b'{"n": %d}\n' % n for n in range(5))
    lines = post(gw.url(events), jsonl, "application/x-ndjson", **{"Idempotency-Key": "lines"})
    assert lines.status == 200 and lines.body["accepted"] == 5
    again = post(gw.url(events), jsonl, "application/x-ndjson", **{"Idempotency-Key": "lines"})
    assert again.status == 200 and again.headers.get("idempotency-replayed") == "true"
    assert again.body == lines.body
    avro_answer = post(gw.url(avro), b'[{"id": 7, "qty": 3}, {"id": 8}]')
    assert avro_answer.status == 207, avro_answer.body
    assert post(gw.url(f"{unique}.other"), b"{}").status == 404
    with urllib.request.urlopen(f"{gw.base}/readyz", timeout=10) as ready:
        assert ready.status == 200
    refused = post(gw.url(ledger), b'[{"id": 1, "qty": 1}, {"id": 2, "qty": 0}]')
    assert refused.status == 422 and "atomic" in refused.body["error"]
    committed = post(gw.url(ledger), b'[{"id": 3, "qty": 1}, {"id": 4, "qty": 2}]')
    assert committed.status == 200, committed.body

    # orders: key, timestamp and value at each reported position
    expected = {1: (1_767_225_600_000, 2)} | {
        r["id"]: (r["ts"], r["qty"]) for r in batch if r["qty"] > 0
    }
    found = _by_position(read_topic(kafka_bootstrap, orders))
    reported = [(1, single.body["results"][0])] + [
        (batch[r["index"]]["id"], r) for r in array.body["results"] if r["status"] == "accepted"
    ]
    assert len(found) == len(reported) == 10
    for order_id, result in reported:
        msg = found[(result["partition"], result["offset"])]
        assert json.loads(msg.value())["id"] == order_id
        assert msg.key() == str(order_id).encode()
        assert msg.timestamp()[1] == expected[order_id][0]
    # the rejected record is a dead letter naming its reason and the gateway
    letters = read_topic(kafka_bootstrap, f"{orders}.dlq")
    assert len(letters) == 1
    headers = dict(letters[0].headers())
    assert headers["headrace.stage"] == b"gateway"
    assert b"record 3: does not match the topic's JSON Schema" in headers["headrace.error.message"]
    assert json.loads(letters[0].value())["id"] == 5
    # JSON lines as sent, once, in order (no key: one partition per request's batch)
    lines_found = _by_position(read_topic(kafka_bootstrap, events))
    assert len(lines_found) == 5, "the idempotent retry wrote nothing"
    for result in lines.body["results"]:
        msg = lines_found[(result["partition"], result["offset"])]
        assert msg.value() == b'{"n": %d}' % result["index"]
    # Avro: Confluent-framed with the local registry's id
    codec = RecordCodec(LocalRegistry(schemas))
    (accepted,) = [r for r in avro_answer.body["results"] if r["status"] == "accepted"]
    avro_msg = _by_position(read_topic(kafka_bootstrap, avro))[
        (accepted["partition"], accepted["offset"])
    ]
    assert avro_msg.value()[:1] == b"\x00"
    assert codec.decode(avro_msg.value()) == {"id": 7, "qty": 3}
    assert avro_msg.key() == b"7"
    # atomic: the refused request wrote nothing, the other one is committed as a whole
    in_ledger = _by_position(read_topic(kafka_bootstrap, ledger))
    assert sorted(json.loads(m.value())["id"] for m in in_ledger.values()) == [3, 4]
    for result in committed.body["results"]:
        assert (result["partition"], result["offset"]) in in_ledger
    assert read_topic(kafka_bootstrap, f"{ledger}.dlq") == []


def test_in_process_gateway_thread(
    tmp_path: Path, kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GatewayThread``, for tests and benchmarks that want the gateway in their process."""
    from gateway.server import GatewayThread
    from headrace.config import load_pipeline

    monkeypatch.delenv("HEADRACE_PROMETHEUS_TARGETS", raising=False)
    topic = f"{unique}.inproc"
    pipeline = load_pipeline(_pipeline(tmp_path, kafka_bootstrap, 0, {topic: {"key": "k"}}))
    with GatewayThread(pipeline, port=0) as gw:
        assert gw.port > 0
        answer = post(f"{gw.url}/topics/{topic}/records", b'{"k": "a", "v": 1}')
        assert answer.status == 200, answer.body
    assert gw.stop() == 0, "nothing left unacknowledged"
    (msg,) = read_topic(kafka_bootstrap, topic)
    result = answer.body["results"][0]
    assert (msg.partition(), msg.offset(), msg.key()) == (
        result["partition"],
        result["offset"],
        b"a",
    )


@dataclass
class Load:
    """A client posting batches of numbered records until stopped; keeps every answer."""

    url: str
    size: int = 20
    pause: float = 0.0
    answers: list[tuple[list[int], Answer]] = field(default_factory=list)
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            numbers = list(range(seq, seq + self.size))
            seq += self.size
            body = json.dumps([{"seq": n} for n in numbers]).encode()
            try:
                self.answers.append((numbers, post(self.url, body)))
            except OSError:
                self.errors += 1
                time.sleep(0.05)
            if self.pause:
                time.sleep(self.pause)

    def accepted(self) -> dict[int, tuple[int, int]]:
        """seq -> (partition, offset) of every record the gateway reported accepted."""
        out = {}
        for numbers, answer in self.answers:
            if answer.status == 200:
                for result in answer.body["results"]:
                    out[numbers[result["index"]]] = (result["partition"], result["offset"])
        return out


def _assert_all_there(bootstrap: str, topic: str, accepted: dict[int, tuple[int, int]]) -> None:
    found = _by_position(read_topic(bootstrap, topic))
    missing = [s for s, pos in accepted.items() if pos not in found]
    assert not missing, f"{len(missing)} accepted records are not in the topic: {missing[:10]}"
    wrong = [s for s, pos in accepted.items() if json.loads(found[pos].value())["seq"] != s]
    assert not wrong, f"records at other offsets than reported: {wrong[:10]}"


def test_sigterm_under_load_flushes_and_exits_0(
    repo_root: Path,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique: str,
    gateway_process: list[Process],
) -> None:
    topic = f"{unique}.load"
    port = _free_port()
    gw = _start(repo_root, _pipeline(tmp_path, kafka_bootstrap, port, {topic: {}}), port, tmp_path)
    gateway_process.append(gw)
    loads = [Load(gw.url(topic)) for _ in range(4)]
    threads = [threading.Thread(target=load.run) for load in loads]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.proc.send_signal(signal.SIGTERM)
    try:
        code = gw.proc.wait(30)
    finally:
        for load in loads:
            load.stop.set()
        for t in threads:
            t.join(30)
    assert code == 0, gw.tail()
    assert "producer flushed" in gw.tail()
    accepted: dict[int, tuple[int, int]] = {}
    for n, load in enumerate(loads):
        accepted |= {n * 1_000_000 + s: pos for s, pos in load.accepted().items()}
    assert len(accepted) > 100, "the load did run"
    statuses = {a.status for load in loads for _, a in load.answers}
    assert statuses <= {200, 503}, statuses
    found = _by_position(read_topic(kafka_bootstrap, topic))
    for load in loads:
        for s, pos in load.accepted().items():
            assert json.loads(found[pos].value())["seq"] == s


def _private_kafka(tmp_path: Path) -> tuple[Kafka, StackPaths]:
    cache = StackPaths.from_env(Path(__file__).resolve().parents[2]).cache
    paths = StackPaths(root=tmp_path / "stack", cache=cache)
    paths.ensure()
    kafka = Kafka(paths=paths, port=_free_port(pair=True))
    kafka.install(lambda line: None)
    kafka.prepare(lambda line: None)
    return kafka, paths


def _run_broker(kafka: Kafka, paths: StackPaths) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    with paths.log_file("kafka").open("ab") as out:
        proc = subprocess.Popen(kafka.command(), stdout=out, stderr=subprocess.STDOUT)
    deadline = started + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, paths.log_file("kafka").read_text()[-3000:]
        try:
            if kafka.healthy():
                return proc, time.monotonic() - started
        except Exception:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the private Kafka did not start within 120 s: {paths.log_file('kafka')}")


def test_broker_outage_503_at_once_nothing_accepted_lost_recovers(
    repo_root: Path, tmp_path: Path, unique: str, gateway_process: list[Process]
) -> None:
    kafka, paths = _private_kafka(tmp_path)
    broker, took = _run_broker(kafka, paths)
    try:
        print(f"private Kafka answered after {took:.1f} s (budget {PRIVATE_BROKER_BUDGET:g} s)")
        topic = f"{unique}.outage"
        port = _free_port()
        pipeline = _pipeline(
            tmp_path,
            kafka.endpoint(),
            port,
            {topic: {}},
            produce_timeout="5s",
            breaker={"failures": 1, "open_for": "1s"},
        )
        gw = _start(repo_root, pipeline, port, tmp_path)
        gateway_process.append(gw)
        load = Load(gw.url(topic), size=5, pause=0.02)
        thread = threading.Thread(target=load.run)
        thread.start()
        try:
            time.sleep(2.0)
            before = len(load.accepted())
            broker.kill()  # the broker dies: no clean shutdown
            broker.wait(30)
            killed_at = time.monotonic()
            time.sleep(6.0)
            outage = [a for _, a in load.answers[-50:]]
            broker, restart_took = _run_broker(kafka, paths)
            print(f"private Kafka restarted in {restart_took:.1f} s")
            deadline = time.monotonic() + 60
            recovered = False
            back_at = time.monotonic()
            while time.monotonic() < deadline and not recovered:
                time.sleep(0.5)
                recovered = any(a.status == 200 for _, a in load.answers[-5:])
            print(f"accepting again {time.monotonic() - back_at:.1f} s after the broker answered")
        finally:
            load.stop.set()
            thread.join(30)
        assert before > 0, "records were accepted before the outage"
        refused = [a for a in outage if a.status == 503]
        times = sorted(a.seconds for a in refused)
        print(
            f"outage: {len(refused)} of the last {len(outage)} answers were 503s, in "
            f"{times[len(times) // 2] * 1e3 if times else 0:.0f} ms (median), "
            f"{times[-1] * 1e3 if times else 0:.0f} ms (max); {len(load.accepted())} records "
            "accepted in all"
        )
        assert refused, f"no 503 during the outage: {[a.status for a in outage]}"
        assert all("retry-after" in {k.lower() for k in a.headers} for a in refused)
        fast = [a for a in refused if a.seconds < 0.5]
        assert len(fast) >= len(refused) // 2, (
            "while the breaker is open, 503s come at once: "
            f"{sorted(round(a.seconds, 2) for a in refused)}"
        )
        assert {a.status for _, a in load.answers} <= {200, 503}
        assert recovered, f"no 200 within 60 s of the broker's return:\n{gw.tail()}"
        assert time.monotonic() - killed_at < 120
        _assert_all_there(kafka.endpoint(), topic, load.accepted())
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0, gw.tail()
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(10)
    assert took < PRIVATE_BROKER_BUDGET, (
        f"the private Kafka took {took:.0f} s to start, over the {PRIVATE_BROKER_BUDGET:g} s budget"
    )
