"""A headrace sink of ``type: jsonl``: each record appended to a file as one JSON line.

The whole connector is this module. It declares what ``headrace.plugins`` asks of a sink:

- its config model (``JsonlSink``: the keys every sink has, from ``SinkBase``, plus ``path``;
  the field descriptions are what ``headrace config reference`` prints);
- ``build``: the ``SinkWriter`` the sink runner calls (``open``, ``write``, ``close``);
- ``probes``: what ``headrace check --connect`` looks at (read-only);
- ``PLUGIN``, which the package's entry point (group ``headrace.sinks``) names.

A record is written as ``{"key": "<the Kafka key as text>", "value": {...}}``, a tombstone as
``{"key": "...", "deleted": true}``. ``write`` returns only once the lines are on disk (written
whole, then ``fsync``), because the runner commits the batch's offsets as soon as ``write``
returns; a failed write is cut back off the file and retried, so no half-written line stays.

Delivery is at least once: within a process a batch offered again is skipped, but after a
crash between ``write`` and the runner's commit the restarted sink appends those records
again. One sink process per file (several copies would interleave their appends).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field

from connectors.records import FatalSinkError, SinkRecord, WriteOutcome
from headrace.config.sinks import SinkBase
from headrace.errors import RetriableError
from headrace.plugins import Probe, SinkPlugin

__all__ = ["PLUGIN", "JsonlSink", "JsonlWriter"]


class JsonlSink(SinkBase):
    """Appends each record to a file as one JSON line."""

    type: Literal["jsonl"] = Field(description="Sink type: jsonl (the headrace-jsonl-sink plugin).")
    path: str = Field(
        min_length=1,
        description="File the records are appended to, one JSON object a line: "
        '{"key": ..., "value": {...}}, a tombstone {"key": ..., "deleted": true} (the file '
        "and its directory are created if missing).",
    )


def _default(value: Any) -> Any:
    """What orjson cannot write itself: exact decimals as text, bytes as base64."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JsonlWriter:
    """The ``connectors.records.SinkWriter`` of one ``jsonl`` sink."""

    def __init__(self, name: str, config: JsonlSink) -> None:
        self.name = name
        self.path = Path(config.path)
        self._fd: int | None = None
        self._written: dict[tuple[str, int], int] = {}  # highest offset on disk, by partition

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise FatalSinkError(f"sink {self.name!r}: cannot open {self.path}: {exc}") from exc

    def write(self, batch: Sequence[SinkRecord]) -> WriteOutcome:
        if self._fd is None:
            raise FatalSinkError(f"sink {self.name!r}: write before open")
        outcome = WriteOutcome()
        lines: list[bytes] = []
        for index, record in enumerate(batch):
            if record.offset <= self._written.get((record.topic, record.partition), -1):
                outcome.counts["skipped_existing"] += 1  # offered again (e.g. a rebalance)
                continue
            key = None if record.key is None else record.key.decode("utf-8", "replace")
            line: dict[str, Any] = (
                {"key": key, "deleted": True}
                if record.value is None
                else {"key": key, "value": record.value}
            )
            try:
                lines.append(orjson.dumps(line, default=_default))
            except TypeError as exc:  # orjson.JSONEncodeError: a dead letter, not a failure
                outcome.reject(index, f"not writable as JSON: {exc}")
                continue
            outcome.counts["deleted" if record.value is None else "written"] += 1
        self._append(b"".join(line + b"\n" for line in lines))
        for record in batch:
            place = (record.topic, record.partition)
            self._written[place] = max(record.offset, self._written.get(place, -1))
        return outcome

    def _append(self, data: bytes) -> None:
        """All of ``data`` on disk, or none of it (the file cut back to where it was)."""
        assert self._fd is not None
        if not data:
            return
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                raise FatalSinkError(
                    f"sink {self.name!r}: {self.path}: write failed ({exc}) and the partial "
                    "lines could not be removed"
                ) from exc
            raise RetriableError(f"sink {self.name!r}: {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def build(name: str, config: JsonlSink, context: Any) -> JsonlWriter:
    """The writer of sink ``name`` (``context``, a ``connectors.build.SinkContext``, is not
    needed: the lines carry the key as it is)."""
    return JsonlWriter(name, config)


def probes(name: str, config: JsonlSink) -> list[Probe]:
    """The file can be appended to: it is writable if it exists, else the nearest existing
    directory above it is (``open`` creates the rest). Nothing is created."""

    def run(_timeout: float) -> tuple[bool, str]:
        path = Path(config.path).absolute()
        if path.exists():
            if path.is_dir():
                return (False, "is a directory")
            ok = os.access(path, os.W_OK)
            return (ok, "file exists, writable" if ok else "file exists, not writable")
        directory = path.parent
        while not directory.exists():
            directory = directory.parent
        ok = directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)
        return (ok, f"{directory} is {'' if ok else 'not '}writable; the file is created")

    return [("jsonl file", config.path, run)]


PLUGIN = SinkPlugin(type="jsonl", config=JsonlSink, build=build, probes=probes)
