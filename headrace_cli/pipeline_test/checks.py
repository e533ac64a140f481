"""A case's expectations against its outcome: one ``Check`` per thing expected.

Each entry of ``expect:`` is one check: a topic's records, the dead letters, a sink's
operations, a stage's rate limit. A check has the diff lines of everything that failed
(empty when it passed) and, for ``--update``, what to write in its place: the same form
(a list stays a list; under ``records``/``count`` only those are rewritten) holding what was
produced, or None when a failed part cannot be rewritten from the outcome (``contains``,
an expression).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headrace.config.problems import format_path
from headrace.expr import EvaluationError, Expression
from headrace_cli.pipeline_test.compare import diff_items
from headrace_cli.pipeline_test.model import (
    DeadLetterSpec,
    ExpectedRecord,
    OperationSpec,
    Outputs,
    RateLimitExpectation,
)
from headrace_cli.pipeline_test.outcome import SHOWN, Outcome
from headrace_cli.pipeline_test.prepare import PreparedCase
from headrace_cli.pipeline_test.values import (
    duration_view,
    encode_spec_key,
    flow,
    json_form,
    key_view,
    plain,
    time_view,
)

__all__ = ["Check", "check_case", "expected_view"]

_MAX_LISTED = 20


@dataclass
class Check:
    """One expectation's result; ``path`` is its key path in the case (``expect.<...>``)."""

    path: tuple[str | int, ...]
    lines: list[str] = field(default_factory=list)
    update: Any = None
    updatable: bool = True

    @property
    def ok(self) -> bool:
        return not self.lines

    @property
    def where(self) -> str:
        return format_path(self.path)


def expected_view(spec: ExpectedRecord | DeadLetterSpec | OperationSpec) -> dict[str, Any]:
    """An expected item in the form actual items have (``outcome``), keys given only."""
    out: dict[str, Any] = {}
    for name in spec.model_fields_set:
        attr = "as_" if name == "as" else name
        value = getattr(spec, attr)
        if name == "key" and not isinstance(spec, OperationSpec):
            out[name] = key_view(encode_spec_key(value))
        elif name == "time" and value is not None:
            out[name] = time_view(value)
        elif name == "at" and value is not None:
            out[name] = duration_view(round(value * 1000))
        elif name in ("value", "doc", "item", "id", "key"):
            out[name] = plain(json_form(value))
        else:
            out[name] = value
    order = list(type(spec).model_fields)
    return {k: out[k] for k in sorted(out, key=order.index)}


def _shown(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    keys = SHOWN[kind]

    def shown(item: dict[str, Any]) -> dict[str, Any]:
        # a record without a key is shown (and written) without one: less to read
        return {k: item[k] for k in keys if k in item and (k != "key" or item[k] is not None)}

    return shown


def _body(kind: str, item: dict[str, Any]) -> Any:
    """What an expression reads of an item: a record's or dead letter's value, an operation
    itself; None (skipped) for a tombstone or bytes that are not a JSON object."""
    if kind == "op":
        return item
    value = item.get("value")
    return value if isinstance(value, dict) else None


def _expression(
    word: str, expr: Expression, kind: str, items: list[dict[str, Any]], show: Any
) -> list[str]:
    """Lines for an ``all``/``any``/``none`` expression that does not hold."""
    results: list[tuple[int, bool, str | None]] = []
    for n, item in enumerate(items, 1):
        body = _body(kind, item)
        if body is None:
            continue
        try:
            results.append((n, expr.test(body), None))
        except EvaluationError as exc:
            results.append((n, False, str(exc)))
    if word == "all":
        bad = [r for r in results if not r[1]]
        if not bad and results:
            return []
        if not results:
            return [f"all: {expr.text!r}: no record to check"]
        lines = [f"all: {expr.text!r} is not true for {len(bad)} of {len(results)}:"]
    elif word == "any":
        if any(r[1] for r in results):
            return []
        return [f"any: {expr.text!r} is true for none of {len(results)} record(s)"]
    else:
        bad = [r for r in results if r[1]]
        if not bad:
            return []
        lines = [f"none: {expr.text!r} is true for {len(bad)} of {len(results)}:"]
    for n, _ok, error in bad[:_MAX_LISTED]:
        note = f" ({error})" if error else ""
        lines.append(f"  #{n} {flow(show(items[n - 1]))}{note}")
    if len(bad) > _MAX_LISTED:
        lines.append(f"  ... and {len(bad) - _MAX_LISTED} more")
    return lines


def _outputs(
    path: tuple[str | int, ...],
    outputs: Outputs[Any],
    raw: Any,
    kind: str,
    actual: list[dict[str, Any]],
) -> Check:
    check = Check(path)
    show = _shown(kind)
    listed = [show(a) for a in actual]
    new = dict(raw) if isinstance(raw, dict) else None
    if outputs.records is not None or outputs.contains is not None:
        contains = outputs.contains is not None
        expected = [expected_view(s) for s in (outputs.contains or outputs.records or [])]
        lines = diff_items(
            expected,
            actual,
            shown=show,
            subset=outputs.subset,
            ordered=outputs.ordered,
            contains=contains,
        )
        if lines is not None:
            noun = "contains" if contains else "records"
            order = ", in order" if outputs.ordered and not contains else ""
            head = f"{noun}{order}: {len(expected)} expected, {len(actual)} produced"
            check.lines += [head, *[f"  {line}" for line in lines]]
            check.updatable = check.updatable and not contains
        if new is not None and not contains:
            new["records"] = listed
    if outputs.count is not None:
        if outputs.count != len(actual):
            check.lines.append(f"count: {outputs.count} expected, {len(actual)} produced")
            check.lines += [
                f"  #{n} {flow(item)}" for n, item in enumerate(listed[:_MAX_LISTED], 1)
            ]
            if len(listed) > _MAX_LISTED:
                check.lines.append(f"  ... and {len(listed) - _MAX_LISTED} more")
        if new is not None:
            new["count"] = len(actual)
    for word in ("all", "any", "none"):
        expr = getattr(outputs, word)
        if expr is not None:
            lines = _expression(word, expr, kind, actual, show)
            if lines:
                check.lines += lines
                check.updatable = False
    check.update = listed if isinstance(raw, list) else new
    return check


def _rate(
    path: tuple[str | int, ...], spec: RateLimitExpectation, raw: Any, actual: dict[str, Any]
) -> Check:
    check = Check(path)
    for name in ("sent", "delayed", "shed"):
        want = getattr(spec, name)
        if want is not None and want != actual[name]:
            check.lines.append(f"{name}: {want} expected, {actual[name]} happened")
    if spec.timeline is not None:
        expected = [
            {
                "at": duration_view(round(s.at * 1000)),
                **{k: v for k, v in (("sent", s.sent), ("shed", s.shed)) if v},
            }
            for s in spec.timeline
        ]
        got = [{"sent": 0, "shed": 0, **step} for step in actual["timeline"]]
        want = [{"sent": 0, "shed": 0, **step} for step in expected]
        if want != got:
            check.lines.append("timeline: what left when (simulated time):")
            check.lines += [f"  expected {flow(e)}" for e in expected]
            check.lines += [f"  actual   {flow(a)}" for a in actual["timeline"]]
    new = dict(raw) if isinstance(raw, dict) else {}
    for name in ("sent", "delayed", "shed", "timeline"):
        if name in new:
            new[name] = actual[name]
    check.update = new
    return check


def check_case(case: PreparedCase, outcome: Outcome) -> list[Check]:
    """Every expectation of ``case`` checked against ``outcome`` (module doc)."""
    expect = case.spec.expect
    raw: dict[str, Any] = case.raw.get("expect") or {}
    checks: list[Check] = []
    for topic, outputs in expect.topics.items():
        checks.append(
            _outputs(("expect", topic), outputs, raw.get(topic), "record", outcome.records(topic))
        )
    if expect.dead_letters is not None:
        checks.append(
            _outputs(
                ("expect", "dead_letters"),
                expect.dead_letters,
                raw.get("dead_letters"),
                "dead",
                outcome.dead_letters(),
            )
        )
    raw_sinks = raw.get("sinks") or {}
    for name, ops in expect.sinks.items():
        checks.append(
            _outputs(
                ("expect", "sinks", name),
                ops,
                raw_sinks.get(name),
                "op",
                outcome.sinks.get(name, []),
            )
        )
    raw_rates = raw.get("rate_limit") or {}
    for name, spec in expect.rate_limit.items():
        checks.append(
            _rate(
                ("expect", "rate_limit", name), spec, raw_rates.get(name), outcome.rate_limit(name)
            )
        )
    return checks
