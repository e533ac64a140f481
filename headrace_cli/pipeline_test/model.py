"""The test file: what ``*_test.yaml`` (or ``tests:`` in a pipeline file) may say.

Every model forbids unknown keys (with a did-you-mean), so a typo in a test file is an
error naming its key path, as ``headrace check`` reports pipeline files. What needs the
pipeline (stage, source, sink and topic names, partitions) is checked by ``suite``; the
shape of the file is checked here. ``docs/testing-pipelines.md`` is the user's guide to it.

Shape::

    pipeline: pipeline.yaml   # default: this file's name without _test
    partitions: 1             # partitions of every topic (default 1)
    idle: 5s                  # the worker's --idle-ms: quiet time before the idle timer
    env: {VAR: value}         # extra ${VAR} values for loading the pipeline
    tests:
      - name: ...
        stages: [clean]       # the stages that run (a name or a list; default none)
        sources: {customers_jsonl: {body: "..."}}   # source parsing fed inline
        input: {topic: [record, ...]}                # records per topic
        advance: 10m          # simulated time that passes after the last input
        expect: {topic: [...], dead_letters: [...], sinks: {...}, rate_limit: {...}}
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BeforeValidator, Field, model_validator

from headrace.config.base import ConfigModel, FieldList, Name, ProblemKey, Topic, problem, problems
from headrace.config.durations import Duration, PositiveDuration
from headrace.config.expressions import ExpressionText

__all__ = [
    "Case",
    "DeadLetterSpec",
    "Expect",
    "ExpectedRecord",
    "InputRecord",
    "OperationSpec",
    "Outputs",
    "RateLimitExpectation",
    "RateStep",
    "SourceFeed",
    "TestFile",
]

_TIME_HINT = (
    "write an ISO-8601 time like 2024-05-01T12:00:00Z (naive means UTC), a date, or epoch "
    "milliseconds"
)


def _time(value: object) -> object:
    """An event time as epoch milliseconds (see ``values``)."""
    if value is None:
        return None
    from producers.encoder import event_time_ms

    if isinstance(value, bool) or not isinstance(value, int | float | str | datetime | date):
        raise problem(f"{value!r} is not a time; {_TIME_HINT}")
    try:
        return event_time_ms(value)
    except (ValueError, OverflowError):
        raise problem(f"{value!r} is not a time; {_TIME_HINT}") from None


EventTime = Annotated[int, BeforeValidator(_time)]
"""An event time in epoch milliseconds."""


def _key(value: object) -> object:
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, list):
        bad = [v for v in value if not isinstance(v, scalar)]
        if bad or not value:
            raise problem(
                "a key is a list of field values (text, numbers, true/false, null), one value, "
                "or null for no key"
            )
        return value
    if not isinstance(value, scalar):
        raise problem(
            f"a key is a list of field values, one value, or null; got {type(value).__name__}"
        )
    return value


KeySpec = Annotated[Any, BeforeValidator(_key)]


class InputRecord(ConfigModel):
    """One input record, or (``file``) a fixture file of records."""

    key: KeySpec = Field(
        default=None,
        description="The Kafka key: a list of field values, one value, or null. Default: the "
        "topic's key fields (those the source or stage writing it keys by) read from the "
        "value; no key when they are not known.",
    )
    value: dict[str, Any] | None = Field(
        default=None, description="The record (a JSON object); null is a tombstone."
    )
    raw: str | None = Field(
        default=None, description="The message bytes as text, instead of value (e.g. not JSON)."
    )
    time: EventTime | None = Field(
        default=None,
        description="Event time (the Kafka timestamp). Default: the value's timestamp_field "
        "when a source writes the topic, else the simulated time it arrives.",
    )
    partition: int | None = Field(
        default=None, ge=0, description="Partition. Default: by key (murmur2), 0 without a key."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Message headers.")
    at: Duration = Field(
        default=0.0, description="Simulated time the record arrives, from the start of the case."
    )
    file: str | None = Field(
        default=None,
        description="A fixture file (.jsonl or .csv, relative to the test file) whose lines "
        "are records: each line a value (as: values) or a record like this one (as: records).",
    )
    as_: Literal["values", "records"] = Field(
        default="values", alias="as", description="How the lines of file are read."
    )

    @model_validator(mode="after")
    def _check(self) -> InputRecord:
        given = self.model_fields_set
        if self.file is not None:
            extra = sorted(given & {"key", "value", "raw", "time", "partition", "headers"})
            if extra:
                raise problem(f"not with file (the file's lines are the records): {extra[0]}")
            return self
        if "as_" in given:
            raise problem("only used with file", "as")
        if "value" in given and "raw" in given:
            raise problem("give value or raw, not both", "raw")
        if "value" not in given and "raw" not in given:
            raise problem("a record needs value (null for a tombstone), raw, or file")
        return self


class ExpectedRecord(ConfigModel):
    """An expected output record: only the keys given are compared."""

    key: KeySpec = Field(default=None, description="The Kafka key (as in input records).")
    value: dict[str, Any] | None = Field(
        default=None, description="The value (null: a tombstone); compared exactly unless subset."
    )
    raw: str | None = Field(default=None, description="The message bytes as text.")
    time: EventTime | None = Field(default=None, description="The event time.")
    partition: int | None = Field(default=None, ge=0, description="The partition.")
    headers: dict[str, str] | None = Field(
        default=None, description="Headers the message has (others may be there too)."
    )
    at: Duration | None = Field(
        default=None, description="Simulated time the message was produced."
    )

    @model_validator(mode="after")
    def _check(self) -> ExpectedRecord:
        if not self.model_fields_set:
            raise problem("an expected record names at least one of " + ", ".join(_RECORD_KEYS))
        return self


_RECORD_KEYS = ("key", "value", "raw", "time", "partition", "headers", "at")


class DeadLetterSpec(ConfigModel):
    """An expected dead letter: only the keys given are compared."""

    topic: Topic | None = Field(
        default=None, description="The topic the record was read from or meant for."
    )
    stage: str | None = Field(
        default=None, description="The source, stage or sink that rejected it."
    )
    reason: str | None = Field(
        default=None, description="Text the error message contains (e.g. 'no value in')."
    )
    key: KeySpec = Field(default=None, description="The record's key.")
    value: dict[str, Any] | None = Field(default=None, description="The record's value.")
    raw: str | None = Field(default=None, description="The record's bytes as text.")
    time: EventTime | None = Field(default=None, description="The record's event time.")

    @model_validator(mode="after")
    def _check(self) -> DeadLetterSpec:
        if not self.model_fields_set:
            raise problem("an expected dead letter names at least one of topic, stage, reason")
        return self


class OperationSpec(ConfigModel):
    """An expected sink operation: only the keys given are compared."""

    op: Literal["insert", "upsert", "replace", "delete", "put"] | None = Field(
        default=None,
        description="MongoDB: insert, upsert, replace, delete; DynamoDB: put, delete.",
    )
    id: Any = Field(default=None, description="MongoDB: the document's _id.")
    key: dict[str, Any] | None = Field(default=None, description="DynamoDB: the item key.")
    doc: dict[str, Any] | None = Field(
        default=None, description="MongoDB: the document written (without _id)."
    )
    item: dict[str, Any] | None = Field(default=None, description="DynamoDB: the item written.")
    guard: str | None = Field(
        default=None,
        description="The version guard, e.g. 'version <= 3': written only over an older or "
        "equal stored version (or none).",
    )

    @model_validator(mode="after")
    def _check(self) -> OperationSpec:
        if not self.model_fields_set:
            raise problem("an expected operation names at least one of op, id, key, doc, item")
        return self


T = TypeVar("T", ExpectedRecord, DeadLetterSpec, OperationSpec)


def _listed(value: object) -> object:
    return {"records": value} if isinstance(value, list) else value


class Outputs(ConfigModel, Generic[T]):
    """What a topic, the dead letters or a sink should hold. A list is short for
    ``records:`` (exactly these, in this order)."""

    records: list[T] | None = Field(
        default=None, description="Exactly these items (in order unless ordered: false)."
    )
    contains: list[T] | None = Field(
        default=None, description="These items among others, in any order."
    )
    ordered: bool = Field(default=True, description="records must come in the order given.")
    subset: bool = Field(
        default=False,
        description="Compare each value (doc, item) on the fields given only; others may be "
        "there too.",
    )
    count: int | None = Field(default=None, ge=0, description="How many items there are.")
    all: ExpressionText | None = Field(
        default=None, description="An expression true for every record's value."
    )
    any: ExpressionText | None = Field(
        default=None, description="An expression true for at least one record's value."
    )
    none: ExpressionText | None = Field(
        default=None, description="An expression true for no record's value."
    )

    @model_validator(mode="after")
    def _check(self) -> Outputs[T]:
        found: list[tuple[ProblemKey, str]] = []
        if self.records is not None and self.contains is not None:
            found.append(("contains", "give records (all of them) or contains, not both"))
        checks = ("records", "contains", "count", "all", "any", "none")
        if all(getattr(self, k) is None for k in checks):
            found.append((None, f"say what to check: one of {', '.join(checks)}"))
        if self.records is not None and self.count is not None:
            found.append(("count", "records already fixes the count; remove one"))
        if found:
            raise problems(found)
        return self


TopicOutputs = Annotated[Outputs[ExpectedRecord], BeforeValidator(_listed)]
DeadLetters = Annotated[Outputs[DeadLetterSpec], BeforeValidator(_listed)]
SinkOutputs = Annotated[Outputs[OperationSpec], BeforeValidator(_listed)]


class RateStep(ConfigModel):
    """What a rate-limited stage let out at one simulated time."""

    at: Duration = Field(description="Simulated time, from the start of the case.")
    sent: int = Field(default=0, ge=0, description="Records sent to the output topic then.")
    shed: int = Field(default=0, ge=0, description="Records sent to <from>.overflow then.")


class RateLimitExpectation(ConfigModel):
    """What a stage's rate limit did; only the keys given are compared."""

    sent: int | None = Field(default=None, ge=0, description="Records let through in all.")
    delayed: int | None = Field(
        default=None, ge=0, description="Of those, records that waited for tokens."
    )
    shed: int | None = Field(
        default=None, ge=0, description="Records sent to <from>.overflow instead."
    )
    timeline: list[RateStep] | None = Field(
        default=None, description="What left when, in simulated time order."
    )

    @model_validator(mode="after")
    def _check(self) -> RateLimitExpectation:
        if not self.model_fields_set:
            raise problem("say what to check: sent, delayed, shed or timeline")
        return self


_SPECIAL = ("dead_letters", "sinks", "rate_limit")


def _split_topics(value: object) -> object:
    """``expect:`` lists topics next to the special keys: gather the topics under
    ``topics`` (``suite`` names them back as ``expect["topic"]``)."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {k: v for k, v in value.items() if k in _SPECIAL}
    topics = {k: v for k, v in value.items() if k not in _SPECIAL}
    if topics:
        out["topics"] = topics
    return out


class ExpectBody(ConfigModel):
    """``expect:`` (topics are gathered under ``topics`` before validation)."""

    topics: dict[Topic, TopicOutputs] = Field(
        default_factory=dict, description="What each named topic holds."
    )
    dead_letters: DeadLetters | None = Field(
        default=None, description="The dead letters of every source, stage and sink."
    )
    sinks: dict[Name, SinkOutputs] = Field(
        default_factory=dict, description="What each named sink would write."
    )
    rate_limit: dict[Name, RateLimitExpectation] = Field(
        default_factory=dict, description="What each named stage's rate limit did."
    )

    @model_validator(mode="after")
    def _check(self) -> ExpectBody:
        if not (self.topics or self.dead_letters or self.sinks or self.rate_limit):
            raise problem(
                "say what to expect: a topic's records, dead_letters, sinks or rate_limit"
            )
        return self


Expect = Annotated[ExpectBody, BeforeValidator(_split_topics)]


class FileBody(ConfigModel):
    """An S3 object body read from a file."""

    file: str = Field(description="Path of the body, relative to the test file (bytes as is).")


class SourceFeed(ConfigModel):
    """Input for one source's parsing: S3 objects, or MySQL rows."""

    objects: dict[str, str | FileBody] | None = Field(
        default=None,
        description="S3: object key -> body text (or {file: path}); a .gz format's text "
        "bodies are compressed for you.",
    )
    body: str | None = Field(
        default=None, description="S3: one object's body (named <prefix>test.<format>)."
    )
    rows: list[dict[str, Any]] | None = Field(
        default=None, description="MySQL: rows as the SELECT returns them (column -> value)."
    )
    file: str | None = Field(
        default=None,
        description="S3: one object's body from this file; MySQL: rows from a .jsonl or .csv "
        "file (relative to the test file).",
    )
    at: Duration = Field(default=0.0, description="Simulated time the source runs.")

    @model_validator(mode="after")
    def _check(self) -> SourceFeed:
        given = [k for k in ("objects", "body", "rows", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise problem("give exactly one of objects, body (S3), rows (MySQL) or file")
        return self


class Case(ConfigModel):
    """One test case."""

    name: str = Field(min_length=1, description="What the case shows (unique in the file).")
    stages: FieldList = Field(
        default_factory=list,
        description="The stages that run, wired as the worker wires them (a name or a list).",
    )
    sources: dict[Name, SourceFeed] = Field(
        default_factory=dict, description="Sources whose parsing is fed inline."
    )
    input: dict[Topic, list[InputRecord]] = Field(
        default_factory=dict, description="Records per topic, or fixture files."
    )
    advance: Duration = Field(
        default=0.0,
        description="Simulated time that passes after the last input (idle windows close as "
        "the worker's timer closes them).",
    )
    partitions: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Partitions of every topic in this case (default: the file's)."
    )
    expect: Expect = Field(description="What the case checks.")

    @model_validator(mode="after")
    def _check(self) -> Case:
        if not (self.stages or self.sources or self.expect.sinks):
            raise problem(
                "a case runs something: name stages, feed sources, or expect what a sink writes"
            )
        return self


class TestFile(ConfigModel):
    """A whole test file (or the ``tests:`` of a pipeline file, with ``pipeline`` unset)."""

    __test__ = False  # not a pytest class

    pipeline: str | None = Field(
        default=None,
        description="The pipeline file, relative to this file (default: this file's name "
        "without _test: pipeline_test.yaml tests pipeline.yaml).",
    )
    partitions: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="Partitions of every topic."
    )
    idle: PositiveDuration = Field(
        default=5.0, description="The worker's --idle-ms: quiet time before the idle timer."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the pipeline's ${VAR}s."
    )
    tests: list[Case] = Field(min_length=1, description="The cases.")

    @model_validator(mode="after")
    def _check(self) -> TestFile:
        seen: dict[str, int] = {}
        found: list[tuple[ProblemKey, str]] = []
        for i, case in enumerate(self.tests):
            if case.name in seen:
                found.append(
                    (
                        ("tests", i, "name"),
                        f"{case.name!r} is also the name of tests[{seen[case.name]}]",
                    )
                )
            seen.setdefault(case.name, i)
        if found:
            raise problems(found)
        return self
