"""Checking one case of a test file against the pipeline, and preparing it to run.

``prepare_case`` (called by ``suite.load_suite`` for every case) checks what needs the
pipeline, each problem at its key path:

- ``stages`` name stages of the pipeline; ``sources`` name sources, fed what their type
  reads (S3: ``objects``, ``body`` or ``file``; MySQL: ``rows`` or ``file``); sinks under
  ``expect.sinks`` exist and are MongoDB or DynamoDB sinks (with their library installed);
  ``expect.rate_limit`` names stages of the case that have a ``rate_limit``;
- every ``input`` topic is read by a stage of the case (its ``from`` or its lookup's
  ``table_from``) or by an expected sink; every expected topic is written by the case (a
  stage's ``to``, a fed source's ``topic``, their ``.dlq``/``.overflow``, an internal
  repartition topic) or is an input topic;

and prepares it: input records become messages (``topics.Arrival``): the key given, else the
topic's key fields (``headrace.config.keys``) read from the value; the value as JSON; the
event time given, else the value's ``timestamp_field`` when a source writes the topic, else
the simulated time it arrives. Fixture files (``.jsonl``: one JSON object a line; ``.csv``: a
header row, every field text) are read here, so a bad one is a problem of the file too.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from headrace.config import Pipeline
from headrace.config.keys import KeyFields, key_fields, needs_repartition
from headrace.config.problems import Problem, format_path, problems_from_validation
from headrace_cli.pipeline_test.model import Case, InputRecord, SourceFeed, TestFile
from headrace_cli.pipeline_test.sinks import PLANNABLE, missing_library
from headrace_cli.pipeline_test.sources import default_object_key
from headrace_cli.pipeline_test.topics import Arrival
from headrace_cli.pipeline_test.values import encode_spec_key
from schemas import JsonCodec, encode_key

__all__ = ["PreparedCase", "prepare_case"]

_CODEC = JsonCodec()

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class PreparedCase:
    """One case, checked and ready: ``arrivals`` are its input messages; ``s3`` and
    ``mysql`` what each fed source reads (object bodies, rows); ``raw`` the case as the
    file writes it (``--update`` keeps its forms)."""

    index: int
    spec: Case
    raw: dict[str, Any]
    partitions: int
    arrivals: tuple[Arrival, ...]
    s3: dict[str, dict[str, bytes | str]] = field(default_factory=dict)
    mysql: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def _close(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Preparer:
    """Checks one case against the pipeline and builds its messages; ``problems`` collects
    what is wrong, each at its key path under ``at``."""

    def __init__(self, pipeline: Pipeline, spec: TestFile, base: Path, at: Path_) -> None:
        self.pipeline = pipeline
        self.spec = spec
        self.base = base
        self.at = at
        self.keys: dict[str, KeyFields] = key_fields(pipeline)
        self.problems: list[Problem] = []

    def fail(self, where: Path_, message: str) -> None:
        self.problems.append(Problem(format_path((*self.at, *where)), message))

    def case(self, index: int, case: Case, raw: dict[str, Any]) -> PreparedCase:
        partitions = case.partitions or self.spec.partitions
        stages = self._stages(case)
        s3, mysql = self._sources(case)
        arrivals = self._inputs(case, partitions)
        self._wiring(case, stages)
        return PreparedCase(index, case, raw, partitions, tuple(arrivals), s3, mysql)

    # -- names ------------------------------------------------------------------------------

    def _stages(self, case: Case) -> list[str]:
        known = list(self.pipeline.stages)
        for j, name in enumerate(case.stages):
            if name not in self.pipeline.stages:
                self.fail(
                    ("stages", j),
                    f"no stage {name!r} in the pipeline{_close(name, known)} "
                    f"(stages: {', '.join(known) or 'none'})",
                )
        return [s for s in case.stages if s in self.pipeline.stages]

    def _sources(
        self, case: Case
    ) -> tuple[dict[str, dict[str, bytes | str]], dict[str, list[dict[str, Any]]]]:
        s3: dict[str, dict[str, bytes | str]] = {}
        mysql: dict[str, list[dict[str, Any]]] = {}
        known = list(self.pipeline.sources)
        for name, feed in case.sources.items():
            where: Path_ = ("sources", name)
            cfg: Any = self.pipeline.sources.get(name)
            if cfg is None:
                self.fail(
                    where,
                    f"no source {name!r} in the pipeline{_close(name, known)} "
                    f"(sources: {', '.join(known) or 'none'})",
                )
            elif cfg.type == "s3":
                if feed.rows is not None:
                    self.fail(
                        (*where, "rows"), f"source {name!r} is s3: give objects, body or file"
                    )
                else:
                    s3[name] = self._objects(cfg, feed, where)
            elif cfg.type == "mysql":
                if feed.rows is None and feed.file is None:
                    self.fail(where, f"source {name!r} is mysql: give rows (or a file of rows)")
                else:
                    mysql[name] = feed.rows if feed.rows is not None else self._rows(feed, where)
            else:
                self.fail(
                    where, f"source {name!r} is {cfg.type}: a test can feed s3 and mysql sources"
                )
        return s3, mysql

    def _objects(self, cfg: Any, feed: SourceFeed, where: Path_) -> dict[str, bytes | str]:
        if feed.body is not None:
            return {default_object_key(cfg): feed.body}
        if feed.file is not None:
            data = self._bytes(feed.file, (*where, "file"))
            return {f"{cfg.prefix}{Path(feed.file).name}": data}
        out: dict[str, bytes | str] = {}
        for key, body in (feed.objects or {}).items():
            out[key] = (
                body
                if isinstance(body, str)
                else self._bytes(body.file, (*where, "objects", key, "file"))
            )
        return out

    def _bytes(self, name: str, where: Path_) -> bytes:
        try:
            return (self.base / name).read_bytes()
        except OSError as exc:
            self.fail(
                where, f"cannot read {name!r} (relative to the test file): {exc.strerror or exc}"
            )
            return b""

    def _rows(self, feed: SourceFeed, where: Path_) -> list[dict[str, Any]]:
        assert feed.file is not None
        return self._lines(feed.file, (*where, "file")) or []

    def _lines(self, name: str, where: Path_) -> list[dict[str, Any]] | None:
        """The objects of a .jsonl file, or the rows of a .csv file (text fields)."""
        data = self._bytes(name, where)
        if not data:
            return None
        text = data.decode("utf-8", errors="replace")
        if name.endswith(".csv"):
            return [dict(row) for row in csv.DictReader(io.StringIO(text))]
        if not name.endswith(".jsonl"):
            self.fail(where, f"{name!r}: a fixture file is .jsonl (one JSON object a line) or .csv")
            return None
        out: list[dict[str, Any]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                self.fail(where, f"{name!r} line {n}: not JSON ({exc})")
                continue
            if not isinstance(value, dict):
                self.fail(where, f"{name!r} line {n}: expected a JSON object")
                continue
            out.append(value)
        return out

    # -- input records ------------------------------------------------------------------------

    def _inputs(self, case: Case, partitions: int) -> list[Arrival]:
        out: list[Arrival] = []
        for topic, records in case.input.items():
            for j, record in enumerate(records):
                where: Path_ = ("input", topic, j)
                if record.file is None:
                    out += self._arrival(topic, record, partitions, where)
                    continue
                lines = self._lines(record.file, (*where, "file")) or []
                for n, line in enumerate(lines, 1):
                    if record.as_ == "records":
                        try:
                            item = InputRecord.model_validate({"at": record.at, **line})
                        except ValidationError as exc:
                            for p in problems_from_validation(exc, InputRecord):
                                self.fail(
                                    (*where, "file"),
                                    f"{record.file!r} record {n}: {p.key}: {p.message}",
                                )
                            continue
                    else:
                        item = InputRecord(value=line, at=record.at)
                    out += self._arrival(topic, item, partitions, where)
        return out

    def _arrival(
        self, topic: str, record: InputRecord, partitions: int, where: Path_
    ) -> list[Arrival]:
        if record.partition is not None and record.partition >= partitions:
            self.fail(
                (*where, "partition"),
                f"partition {record.partition} does not exist: the case has {partitions} "
                "partition(s) per topic (set partitions: on the case or the file)",
            )
            return []
        value = record.value
        if "key" in record.model_fields_set:
            key = encode_spec_key(record.key)
        else:
            fields = self.keys.get(topic)
            key = (
                encode_key([value.get(f) for f in fields]) if fields and value is not None else None
            )
        if record.raw is not None:
            data: bytes | None = record.raw.encode()
        elif value is None:
            data = None
        else:
            try:
                data = _CODEC.encode(value)
            except TypeError as exc:
                self.fail((*where, "value"), f"cannot be JSON: {exc}")
                return []
        time = record.time if record.time is not None else self._source_time(topic, value)
        headers = tuple((k, v.encode()) for k, v in record.headers.items())
        return [Arrival(topic, key, data, time, record.partition, headers, round(record.at * 1000))]

    def _source_time(self, topic: str, value: dict[str, Any] | None) -> int | None:
        """The event time a source writing ``topic`` would give ``value`` (its
        ``timestamp_field``), or None."""
        from producers.encoder import event_time_ms

        if value is None:
            return None
        for source in self.pipeline.sources.values():
            field_ = source.timestamp_field
            if source.topic == topic and field_ and value.get(field_) is not None:
                try:
                    return event_time_ms(value[field_])
                except (ValueError, OverflowError):
                    return None
        return None

    # -- wiring -------------------------------------------------------------------------------

    def _wiring(self, case: Case, stages: list[str]) -> None:
        pipeline = self.pipeline
        app_id = f"headrace-{pipeline.name}"
        reads: dict[str, str] = {}  # topic -> who reads it
        writes: set[str] = set(case.input)
        for name in stages:
            stage = pipeline.stages[name]
            reads.setdefault(stage.from_, f"stage {name!r}")
            if stage.lookup is not None:
                reads.setdefault(stage.lookup.table_from, f"stage {name!r} (lookup)")
            writes |= {stage.to, stage.from_ + ".dlq", stage.from_ + ".overflow"}
            if stage.rank is not None:
                writes.add(f"{app_id}-{name}-by-partition")
            if stage.aggregate is not None and needs_repartition(stage, self.keys.get(stage.from_)):
                writes.add(f"{app_id}-{name}-by-group")
        for name in case.sources:
            source = pipeline.sources.get(name)
            if source is not None:
                writes |= {source.topic, source.topic + ".dlq"}
        for name in case.expect.sinks:
            sink: Any = pipeline.sinks.get(name)
            if sink is None:
                known = list(pipeline.sinks)
                self.fail(
                    ("expect", "sinks", name),
                    f"no sink {name!r} in the pipeline{_close(name, known)} "
                    f"(sinks: {', '.join(known) or 'none'})",
                )
            elif sink.type not in PLANNABLE:
                self.fail(
                    ("expect", "sinks", name),
                    f"sink {name!r} is {sink.type}: a test can check the writes of "
                    f"{' and '.join(PLANNABLE)} sinks",
                )
            elif (missing := missing_library(name, sink.type)) is not None:
                self.fail(("expect", "sinks", name), missing)
            else:
                reads.setdefault(sink.from_, f"sink {name!r}")
                writes.add(sink.from_ + ".dlq")
        for topic in case.input:
            if topic not in reads:
                running = ", ".join(stages) or "none"
                self.fail(
                    ("input", topic),
                    f"nothing in this case reads {topic!r}{_close(topic, reads)} (its stages: "
                    f"{running}); add the stage that reads it to stages",
                )
        for topic in case.expect.topics:
            if topic not in writes:
                self.fail(
                    ("expect", topic),
                    f"nothing in this case writes {topic!r}{_close(topic, writes)}; add the "
                    "stage or source that writes it, or expect another topic",
                )
        for name in case.expect.rate_limit:
            limited_stage = pipeline.stages.get(name)
            if name not in stages or limited_stage is None or limited_stage.rate_limit is None:
                limited = [s for s in stages if pipeline.stages[s].rate_limit is not None]
                self.fail(
                    ("expect", "rate_limit", name),
                    f"{name!r} is not a rate-limited stage of this case (rate-limited stages "
                    f"it runs: {', '.join(limited) or 'none'})",
                )


def prepare_case(
    pipeline: Pipeline, spec: TestFile, base: Path, index: int, raw: dict[str, Any]
) -> tuple[PreparedCase, list[Problem]]:
    """Case ``index`` of ``spec`` checked against ``pipeline`` and prepared (module doc);
    ``base`` is the test file's folder (fixture paths are relative to it), ``raw`` the case
    as the file writes it. The problems found, each at its key path (``tests[i]...``)."""
    prep = _Preparer(pipeline, spec, base, ("tests", index))
    prepared = prep.case(index, spec.tests[index], raw)
    return prepared, prep.problems
