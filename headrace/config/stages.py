"""Stage models: what ``stages:`` entries may say.

A stage reads ``from`` and writes ``to``. It is one of three kinds (``Stage.kind``):

- ``records``: any of ``lookup`` (applied first), ``transform`` (steps in order), then
  ``rate_limit``; ``key`` re-keys the output;
- ``aggregate``: a windowed aggregation, alone in its stage (output keyed by ``group_by``);
- ``rank``: a top-N ranking, alone in its stage (output keyed by partition and member).

A stage with nothing to do, or mixing ``aggregate``/``rank`` with other operators, is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from headrace.config.base import (
    ConfigModel,
    FieldList,
    HookRef,
    NonEmptyFieldList,
    ProblemKey,
    Topic,
    TypeLabel,
    problem,
    problems,
)
from headrace.config.durations import Duration, PositiveDuration
from headrace.config.expressions import ExpressionText, compile_config_expression
from headrace.config.redact import redact_text
from headrace.expr import Expression

__all__ = [
    "MEASURE_FUNCTIONS",
    "WINDOW_FIELDS",
    "Aggregate",
    "CastType",
    "Lookup",
    "Measure",
    "OrderKey",
    "Rank",
    "RateLimit",
    "Stage",
    "TransformStep",
    "Window",
]

CastType = Literal["str", "int", "float", "decimal", "bool", "timestamp", "date"]
MEASURE_FUNCTIONS = ("count", "sum", "min", "max", "avg", "count_distinct")
WINDOW_FIELDS = ("window_start", "window_end")
_STEP_KEYS = ("filter", "set", "rename", "drop", "cast", "validate", "python")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEASURE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*$", re.DOTALL)
_ORDER_RE = re.compile(r"^\s*(\S+)(?:\s+(asc|desc))?\s*$", re.IGNORECASE)


class TransformStep(ConfigModel):
    """One transform step: exactly one of its keys."""

    filter: ExpressionText | None = Field(
        default=None, description="Keep only records for which this expression is true."
    )
    set: dict[str, ExpressionText] | None = Field(
        default=None, description="Computed fields: field name -> expression."
    )
    rename: dict[str, str] | None = Field(
        default=None, description="Renamed fields: old name -> new name."
    )
    drop: FieldList | None = Field(default=None, description="Fields removed from the record.")
    cast: dict[str, CastType] | None = Field(
        default=None,
        description="Field conversions: field -> str|int|float|decimal|bool|timestamp|date.",
    )
    validate_: str | None = Field(
        default=None,
        alias="validate",
        description="Schema name (<schemas.dir>/<name>.avsc) records must match; others go "
        "to the dead-letter topic.",
    )
    python: HookRef | None = Field(
        default=None,
        description="User function 'package.module:function' taking a record and returning a "
        "record, a list of records, or None to drop it.",
    )

    @property
    def kind(self) -> str:
        """The one key this step uses (``filter``, ``set``, ... ``python``)."""
        return next(k for k in _STEP_KEYS if getattr(self, _attr(k)) is not None)

    @model_validator(mode="after")
    def _check(self) -> TransformStep:
        used = [k for k in _STEP_KEYS if getattr(self, _attr(k)) is not None]
        if not used:
            raise problem(f"a transform step needs one of {', '.join(_STEP_KEYS)}")
        if len(used) > 1:
            raise problem(
                f"a transform step has exactly one key, found {' and '.join(used)}; "
                "write them as separate steps (they run in order)"
            )
        found: list[tuple[ProblemKey, str]] = []
        for key in ("set", "rename", "cast"):
            value = getattr(self, key)
            if value is not None and not value:
                found.append((key, "must not be empty"))
        if self.drop is not None and not self.drop:
            found.append(("drop", "must not be empty"))
        if self.rename:
            targets = list(self.rename.values())
            if len(set(targets)) != len(targets):
                found.append(("rename", "two fields are renamed to the same name"))
        if found:
            raise problems(found)
        return self


def _attr(key: str) -> str:
    return "validate_" if key == "validate" else key


class TokenRate(ConfigModel):
    """A token bucket's size: ``rate`` records per ``per``, bursts up to ``burst`` (default
    ``rate``, at least 1). Shared by a stage's and the gateway's rate limits."""

    rate: float = Field(gt=0, description="Records allowed per 'per' period.")
    per: PositiveDuration = Field(default=1.0, description="The period of 'rate'.")
    burst: float = Field(
        default=1.0,  # replaced by rate when missing or null (see _default_burst)
        ge=1,
        description="Bucket capacity: records allowed at once.",
        json_schema_extra={"default_text": "rate (at least 1)"},
    )

    @model_validator(mode="before")
    @classmethod
    def _default_burst(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("burst") is None:
            rate = data.get("rate")
            try:
                burst = max(float(rate), 1.0) if not isinstance(rate, bool) else 1.0  # type: ignore[arg-type]
            except (TypeError, ValueError):
                burst = 1.0
            return {**data, "burst": burst}
        return data

    @property
    def per_second(self) -> float:
        """The rate in records per second."""
        return self.rate / self.per


class RateLimit(TokenRate):
    """Token bucket: ``rate`` records per ``per``, bursts up to ``burst``."""

    key: NonEmptyFieldList | None = Field(
        default=None, description="Limit per value of these fields instead of per stage."
    )
    on_excess: Literal["delay", "shed"] = Field(
        default="delay",
        description="What happens to records over the limit. delay: wait (backpressure, "
        "nothing dropped); shed: send the excess to <topic>.overflow.",
    )


class Window(ConfigModel):
    """An event-time window."""

    type: Literal["tumbling", "hopping"] = Field(
        description="Window kind: tumbling, or hopping (with step)."
    )
    size: PositiveDuration = Field(description="Window length.")
    step: PositiveDuration | None = Field(
        default=None, description="Hopping windows: how far each window starts after the last."
    )
    grace: Duration = Field(
        default=0.0,
        description="How long after its end a window still accepts late records; it is emitted "
        "when the watermark passes end + grace.",
    )

    @model_validator(mode="after")
    def _check(self) -> Window:
        if self.type == "hopping" and self.step is None:
            raise problem("required for a hopping window", "step")
        if self.type == "tumbling" and self.step is not None:
            raise problem("only used by hopping windows; remove it or use type: hopping", "step")
        if self.step is not None and self.step > self.size:
            raise problem("must not be larger than size", "step")
        return self


@dataclass(frozen=True)
class Measure:
    """A parsed measure ``fn(argument)``; ``argument`` is None for ``count()``."""

    function: str
    argument: Expression | None
    text: str

    def __str__(self) -> str:
        return redact_text(self.text)

    def __repr__(self) -> str:
        return f"Measure({redact_text(self.text)!r})"


def _parse_measure(value: object) -> Measure:
    if isinstance(value, Measure):
        return value
    if not isinstance(value, str):
        raise problem(f"expected a measure like 'sum(total)', got {type(value).__name__}")
    match = _MEASURE_RE.match(value)
    if match is None:
        raise problem(
            f"{value!r} is not a measure; write fn(expression) with fn one of "
            f"{', '.join(MEASURE_FUNCTIONS)}"
        )
    function = match.group(1).lower()
    if function not in MEASURE_FUNCTIONS:
        raise problem(f"{match.group(1)!r} is not one of {', '.join(MEASURE_FUNCTIONS)}")
    raw = match.group(2)
    if not raw.strip() or (function == "count" and raw.strip() == "*"):
        if function != "count":
            raise problem(f"{function}() needs an argument, e.g. {function}(total)")
        return Measure(function=function, argument=None, text=value)
    argument = compile_config_expression(raw, column_offset=match.start(2), shown=value)
    return Measure(function=function, argument=argument, text=value)


MeasureText = Annotated[
    Measure,
    PlainValidator(_parse_measure),
    PlainSerializer(lambda m: m.text, return_type=str),
    TypeLabel("measure"),
]


class Aggregate(ConfigModel):
    """Windowed aggregation per group."""

    group_by: FieldList = Field(description="Fields that form a group ([] for one group).")
    window: Window = Field(description="The window.")
    measures: dict[str, MeasureText] = Field(
        min_length=1,
        description="Output field -> 'fn(expression)' with fn one of count, sum, min, max, avg, "
        "count_distinct (count() counts records).",
    )
    having: ExpressionText | None = Field(
        default=None, description="Emit only groups for which this expression is true."
    )
    emit: Literal["final", "updates"] = Field(
        default="final",
        description="When results are emitted. final: once per window, when it closes; "
        "updates: also running values.",
    )

    @model_validator(mode="after")
    def _check(self) -> Aggregate:
        found: list[tuple[ProblemKey, str]] = []
        for name in self.measures:
            if not _IDENT_RE.match(name):
                found.append((("measures", name), "a measure name is a plain identifier"))
            elif name in self.group_by or name in WINDOW_FIELDS:
                found.append((("measures", name), "clashes with a group_by or window field"))
        if self.having is not None:
            output = {*self.group_by, *self.measures, *WINDOW_FIELDS}
            unknown = sorted(set(self.having.fields) - output)
            if unknown:
                found.append(
                    (
                        "having",
                        f"reads {', '.join(map(repr, unknown))}, which is not in the output "
                        f"(group_by fields, measures, window_start, window_end)",
                    )
                )
        if found:
            raise problems(found)
        return self


@dataclass(frozen=True)
class OrderKey:
    """One ``order_by`` entry: a field and its direction."""

    field: str
    descending: bool

    def __str__(self) -> str:
        return f"{self.field} {'desc' if self.descending else 'asc'}"


def _parse_order(value: object) -> OrderKey:
    if isinstance(value, OrderKey):
        return value
    match = _ORDER_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise problem(f"{value!r} is not 'field', 'field asc' or 'field desc'")
    return OrderKey(field=match.group(1), descending=(match.group(2) or "").lower() == "desc")


OrderKeyText = Annotated[
    OrderKey,
    PlainValidator(_parse_order),
    PlainSerializer(str, return_type=str),
    TypeLabel("'field [asc|desc]'"),
]


class Rank(ConfigModel):
    """Top-N ranking per partition, with SQL semantics for ties."""

    partition_by: FieldList = Field(
        default_factory=list, description="Fields that form a partition ([]: one ranking)."
    )
    order_by: list[OrderKeyText] = Field(
        min_length=1, description="Sort keys, each 'field', 'field asc' or 'field desc'."
    )
    function: Literal["row_number", "rank", "dense_rank"] = Field(
        default="row_number",
        description="Ranking function, as in SQL: row_number, rank or dense_rank.",
    )
    limit: int = Field(ge=1, description="Keep the top N per partition.")


class Lookup(ConfigModel):
    """Enrich records with the latest value per key from another topic."""

    table_from: Topic = Field(description="Topic holding the lookup values, keyed like 'on'.")
    on: NonEmptyFieldList = Field(description="Record fields matched against the lookup key.")
    fields: NonEmptyFieldList = Field(description="Fields copied from the lookup value.")
    missing: Literal["keep", "drop", "dlq"] = Field(
        default="keep",
        description="No lookup value: keep the record as is, drop it, or send it to the DLQ.",
    )


class Stage(ConfigModel):
    """A stream stage: reads ``from``, applies its operators, writes ``to``."""

    from_: Topic = Field(alias="from", description="Topic the stage reads.")
    to: Topic = Field(description="Topic the stage writes.")
    key: NonEmptyFieldList | None = Field(
        default=None,
        description="Record fields forming the output key (default: the input key); "
        "not with aggregate or rank, whose output keys are fixed.",
    )
    lookup: Lookup | None = Field(default=None, description="Lookup join (runs first).")
    transform: list[TransformStep] | None = Field(
        default=None, description="Transform steps, run in order."
    )
    rate_limit: RateLimit | None = Field(default=None, description="Rate limit (runs last).")
    aggregate: Aggregate | None = Field(default=None, description="Windowed aggregation.")
    rank: Rank | None = Field(default=None, description="Top-N ranking.")

    @property
    def kind(self) -> Literal["records", "aggregate", "rank"]:
        """``aggregate``, ``rank``, or ``records`` (lookup/transform/rate_limit)."""
        if self.aggregate is not None:
            return "aggregate"
        if self.rank is not None:
            return "rank"
        return "records"

    @model_validator(mode="after")
    def _check(self) -> Stage:
        record_ops = [
            k for k in ("lookup", "transform", "rate_limit", "key") if getattr(self, k) is not None
        ]
        whole_ops = [k for k in ("aggregate", "rank") if getattr(self, k) is not None]
        found: list[tuple[ProblemKey, str]] = []
        if not whole_ops and not [k for k in record_ops if k != "key"]:
            found.append(
                (None, "a stage needs one of transform, rate_limit, lookup, aggregate or rank")
            )
        if len(whole_ops) > 1:
            found.append((None, "aggregate and rank go in separate stages"))
        elif whole_ops and record_ops:
            found.append(
                (
                    record_ops[0],
                    f"cannot be combined with {whole_ops[0]} in one stage; "
                    "use a separate stage before it",
                )
            )
        if self.transform is not None and not self.transform:
            found.append(("transform", "must have at least one step"))
        if self.from_ == self.to:
            found.append(("to", f"a stage cannot write to the topic it reads ({self.to!r})"))
        if found:
            raise problems(found)
        return self
