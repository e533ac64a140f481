"""Checkpoint values: serialization, tombstones, versions, and what --reset says."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from headrace.checkpoints import (
    CheckpointError,
    CheckpointStore,
    checkpoint_topic,
    decode_checkpoint,
    encode_checkpoint,
)
from headrace_cli.produce_cmd import describe_checkpoint
from producers.s3_state import S3State, digest


def test_round_trip_s3_and_mysql_states() -> None:
    s3 = {
        "done": {"a/1.jsonl": "etag1", "a/é.jsonl": "e2"},
        "current": {"key": "a/3.jsonl", "etag": "e3", "line": 1200},
    }
    s3_sweep = S3State(
        after="a/2.jsonl",
        start=datetime(2024, 5, 1, 12, tzinfo=UTC),
        prev=datetime(2024, 5, 1, 11, tzinfo=UTC),
        recent={digest("a/2.jsonl", "e2")},
        current={"key": "a/3.jsonl", "etag": "e3", "line": 1200},
        finished=2,
    ).to_state()
    mysql = {"mode": "timestamp+incrementing", "ts": "2024-01-01T00:00:01.500000", "id": 9}
    for state in (s3, s3_sweep, mysql):
        data = encode_checkpoint("src", state, at_ms=5)
        assert orjson.loads(data) == {"v": 1, "source": "src", "state": state, "at_ms": 5}
        assert decode_checkpoint("src", data) == state
    assert S3State.from_state(s3_sweep).to_state() == s3_sweep


def test_tombstone_means_no_state() -> None:
    assert decode_checkpoint("src", None) is None


def test_unknown_version_and_garbage_are_clear_errors() -> None:
    with pytest.raises(CheckpointError, match="--reset"):
        decode_checkpoint("src", orjson.dumps({"v": 99, "state": {}}))
    with pytest.raises(CheckpointError, match="not JSON"):
        decode_checkpoint("src", b"\x00garbage")
    with pytest.raises(CheckpointError, match="no state"):
        decode_checkpoint("src", orjson.dumps({"v": 1, "state": 3}))


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def produce(self, topic, value=None, key=None):
        self.sent.append((topic, value, key))

    def flush(self, timeout=0.0):
        return 0


def test_store_writes_keyed_by_source_in_the_pipeline_topic() -> None:
    store = CheckpointStore({"bootstrap.servers": "x:1"}, "shop", "orders_db")
    p = _FakeProducer()
    store.save(p, {"mode": "incrementing", "ts": None, "id": 3})
    assert checkpoint_topic("shop") == "_headrace.shop.checkpoints"
    [(topic, value, key)] = p.sent
    assert (topic, key) == ("_headrace.shop.checkpoints", b"orders_db")
    assert decode_checkpoint("orders_db", value) == {"mode": "incrementing", "ts": None, "id": 3}


def test_describe_checkpoint_says_what_a_reset_discards() -> None:
    assert describe_checkpoint(None) == "no stored position"
    s3 = {"done": {"a": "1", "b": "2"}, "current": {"key": "c", "etag": "3", "line": 7}}
    assert describe_checkpoint(s3) == "2 objects done, inside 'c' at line 7"
    sweep = S3State(after="b", finished=1200, start=datetime(2024, 5, 1, tzinfo=UTC))
    assert describe_checkpoint(sweep.to_state()) == "1200 objects done, this pass up to 'b'"
    assert describe_checkpoint({"mode": "incrementing", "ts": None, "id": 5}) == (
        "mode incrementing, timestamp None, id 5"
    )
