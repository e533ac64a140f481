"""The jsonl writer and probe on their own (no Kafka): what a plugin package ships as its
unit tests. ``tests/integration/test_plugin_sink.py`` runs them against the installed copy."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from headrace_jsonl_sink import PLUGIN, JsonlSink, JsonlWriter

from connectors.records import SinkRecord
from headrace.errors import RetriableError


def _config(path: Path) -> JsonlSink:
    return JsonlSink.model_validate({"type": "jsonl", "from": "t", "path": str(path)})


def _record(offset: int, key: str, value: dict[str, Any] | None) -> SinkRecord:
    return SinkRecord("t", 0, offset, key.encode(), value)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _writer(path: Path) -> JsonlWriter:
    writer = JsonlWriter("out", _config(path))
    writer.open()
    return writer


def test_records_and_tombstones_are_appended_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.jsonl"
    writer = _writer(path)
    outcome = writer.write(
        [_record(0, "a", {"n": 1, "price": Decimal("1.10")}), _record(1, "a", None)]
    )
    assert dict(outcome.counts) == {"written": 1, "deleted": 1} and not outcome.rejected
    writer.write([_record(2, "b", {"n": 2, "raw": b"\x00\xff"})])
    writer.close()
    assert _lines(path) == [
        {"key": "a", "value": {"n": 1, "price": "1.10"}},
        {"key": "a", "deleted": True},
        {"key": "b", "value": {"n": 2, "raw": "AP8="}},
    ]
    writer = _writer(path)  # a restart appends
    writer.write([_record(3, "c", {"n": 3})])
    assert len(_lines(path)) == 4


def test_a_batch_offered_again_is_not_written_twice(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "out.jsonl")
    batch = [_record(5, "a", {"n": 1}), _record(6, "b", {"n": 2})]
    writer.write(batch)
    assert dict(writer.write(batch).counts) == {"skipped_existing": 2}
    assert len(_lines(tmp_path / "out.jsonl")) == 2


def test_a_value_json_cannot_hold_is_a_dead_letter(tmp_path: Path) -> None:
    writer = _writer(tmp_path / "out.jsonl")
    outcome = writer.write([_record(0, "a", {"x": object()}), _record(1, "b", {"n": 1})])
    assert list(outcome.rejected) == [0] and "not writable as JSON" in outcome.rejected[0]
    assert _lines(tmp_path / "out.jsonl") == [{"key": "b", "value": {"n": 1}}]


def test_a_failed_write_leaves_no_partial_line_and_is_retriable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jsonl"
    writer = _writer(path)
    writer.write([_record(0, "a", {"n": 1})])
    real_write = os.write
    calls = []

    def half_then_full_disk(fd: int, data: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    batch = [_record(1, "b", {"n": 2}), _record(2, "c", {"n": 3})]
    with pytest.raises(RetriableError, match="No space left"):
        writer.write(batch)
    assert _lines(path) == [{"key": "a", "value": {"n": 1}}]
    monkeypatch.setattr(os, "write", real_write)
    writer.write(batch)  # the runner's retry: written whole, once
    assert [line["key"] for line in _lines(path)] == ["a", "b", "c"]


def test_write_returns_only_after_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = _writer(tmp_path / "out.jsonl")
    writer.write([_record(0, "a", {"n": 1})])
    assert len(synced) == 1


def test_the_probe_says_whether_the_file_can_be_written(tmp_path: Path) -> None:
    config = _config(tmp_path / "new" / "out.jsonl")
    [(kind, target, run)] = PLUGIN.probes("out", config)
    assert (kind, target) == ("jsonl file", str(tmp_path / "new" / "out.jsonl"))
    ok, detail = run(1.0)
    assert ok and "writable" in detail and not (tmp_path / "new").exists()  # nothing created
    [(_, _, run)] = PLUGIN.probes("out", _config(tmp_path))
    assert run(1.0) == (False, "is a directory")
