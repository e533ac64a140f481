"""`headrace dlq list|show|replay` against real dead-letter topics."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import uuid4

import pytest
from confluent_kafka import Consumer, Message, Producer
from fixtures.values import present

from headrace.dlq import DeadLetter, DeadLetterWriter
from headrace.errors import PoisonRecord
from headrace_cli.main import main


def _pipeline(tmp_path: Path, bootstrap: str, topic: str) -> Path:
    f = tmp_path / "pipeline.yaml"
    f.write_text(
        f"name: dlqtest\nkafka: {{bootstrap_servers: '{bootstrap}'}}\ntopics: ['{topic}']\n"
        f"sinks: {{m: {{type: mongodb, from: '{topic}', uri: 'mongodb://127.0.0.1:27017',"
        f" database: d, collection: c}}}}\n"
    )
    return f


def _read_all(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-check-{uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
        # a little longer, to see anything beyond what was expected
        got += [m for m in consumer.consume(100, 2.0) if m.error() is None]
    finally:
        consumer.close()
    return got


def test_list_show_and_replay_once(
    tmp_path: Path, kafka_bootstrap: str, new_topic, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(".orders", 1)
    new_topic(".orders.dlq", 2)
    pipeline = _pipeline(tmp_path, kafka_bootstrap, topic)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    writer = DeadLetterWriter(producer)
    for i in range(6):
        writer.send(
            DeadLetter.from_error(
                topic=topic,
                stage="orders_db" if i % 2 == 0 else "clean_orders",
                error=PoisonRecord(f"line {i}: bad price"),
                position={"line": i},
                key=str(i).encode(),
                value=f'{{"id": {i}}}'.encode(),
            )
        )
    assert producer.flush(10) == 0

    assert main(["dlq", "list", "-f", str(pipeline), topic]) == 0
    out = capsys.readouterr().out
    assert out.count("PoisonRecord") == 6
    assert "line 3: bad price" in out and "orders_db" in out and "clean_orders" in out

    assert main(["dlq", "show", "-f", str(pipeline), f"{topic}.dlq", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "value:" in out and "position:" in out

    assert main(["dlq", "replay", "-f", str(pipeline), topic, "--stage", "orders_db"]) == 0
    assert "replayed 3 dead letter(s); skipped 3" in capsys.readouterr().out
    back = _read_all(kafka_bootstrap, topic, 3)
    assert sorted(present(m.key()) for m in back) == [b"0", b"2", b"4"]
    assert {m.value() for m in back} == {b'{"id": 0}', b'{"id": 2}', b'{"id": 4}'}

    # Progress is remembered: a second replay sends nothing again.
    assert main(["dlq", "replay", "-f", str(pipeline), topic]) == 0
    assert "replayed 0 dead letter(s)" in capsys.readouterr().out
    assert len(_read_all(kafka_bootstrap, topic, 3)) == 3


def test_missing_dlq_topic_is_a_clear_error(
    tmp_path: Path, kafka_bootstrap: str, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = _pipeline(tmp_path, kafka_bootstrap, f"{unique}.nothing")
    assert main(["dlq", "list", "-f", str(pipeline), f"{unique}.nothing"]) == 1
    assert "does not exist (no dead letters yet)" in capsys.readouterr().err
