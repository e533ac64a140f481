"""Running a case: sources, the simulated stages, sinks, then the checks, timed.

Order, all in one process and on one simulated clock: each fed source parses its input
(``sources``), its records and dead letters arriving in its topics at the source's ``at``;
the input records arrive at theirs; the simulation runs the case's stages until nothing is
left and no idle timer is due before the last arrival plus ``advance`` (``engine``); each
expected sink plans its writes over what its topic then holds (``sinks``), its dead letters
landing in ``<from>.dlq``; then every expectation is checked (``checks``). A case that
raises is an *error* (its message and the place it was raised), not a failure.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

from headrace_cli.pipeline_test.checks import Check, check_case
from headrace_cli.pipeline_test.engine import RateBatch, Simulation
from headrace_cli.pipeline_test.outcome import Outcome
from headrace_cli.pipeline_test.prepare import PreparedCase
from headrace_cli.pipeline_test.sinks import plan_sink
from headrace_cli.pipeline_test.sources import mysql_messages, s3_messages, s3_objects
from headrace_cli.pipeline_test.suite import Suite
from headrace_cli.pipeline_test.topics import Arrival

__all__ = ["CaseResult", "run_case", "warm_up"]


@dataclass
class CaseResult:
    """How one case went: its checks (all passed: ``ok``) or the error it raised."""

    case: PreparedCase
    seconds: float
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def status(self) -> str:
        """PASSED, FAILED or ERROR."""
        if self.error is not None:
            return "ERROR"
        return "PASSED" if self.ok else "FAILED"


def _source_arrivals(suite: Suite, case: PreparedCase) -> list[Arrival]:
    out: list[Arrival] = []
    for name, feed in case.spec.sources.items():
        if name in case.s3:
            cfg = suite.pipeline.sources[name]
            messages = s3_messages(suite.pipeline, name, s3_objects(cfg, case.s3[name]))
        else:
            messages = mysql_messages(suite.pipeline, name, case.mysql[name])
        at = round(feed.at * 1000)
        out += [
            Arrival(m.topic, m.key, m.value, m.timestamp_ms, m.partition, tuple(m.headers), at)
            for m in messages
        ]
    return out


def _simulate(suite: Suite, case: PreparedCase) -> Outcome:
    sim = Simulation(
        suite.pipeline, case.spec.stages, partitions=case.partitions, idle_ms=suite.idle_ms
    )
    arrivals = [*case.arrivals, *_source_arrivals(suite, case)]
    horizon = max((a.at_ms for a in arrivals), default=0) + round(case.spec.advance * 1000)
    sim.run(arrivals, horizon)
    rate: dict[str, list[RateBatch]] = {}
    for batch in sim.rate:
        rate.setdefault(batch.stage, []).append(batch)
    outcome = Outcome(sim.topics, rate=rate)
    for name in case.spec.expect.sinks:
        topic = suite.pipeline.sinks[name].from_
        plan = plan_sink(suite.pipeline, name, sim.topics.messages(topic))
        outcome.sinks[name] = plan.operations
        for letter in plan.dead:
            sim.topics.land(letter, sim.now)
    return outcome


def run_case(suite: Suite, case: PreparedCase) -> CaseResult:
    """Run ``case`` of ``suite`` and check it (module doc)."""
    started = time.perf_counter()
    try:
        outcome = _simulate(suite, case)
        checks = check_case(case, outcome)
    except Exception as exc:  # a case that raises is reported, the others still run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
        return CaseResult(case, time.perf_counter() - started, error=error)
    return CaseResult(case, time.perf_counter() - started, checks, outcome=outcome)


_MODULES = {
    "s3": ("producers.s3_source", "producers.s3_formats", "producers.projection"),
    "sink": ("connectors.mongodb_writer", "connectors.dynamodb_writer", "pymongo"),
}


def warm_up(suites: Iterable[Suite]) -> None:
    """Import what the cases will use (S3 parsing, sink writers, pymongo's operations) before
    any is timed: a case's time is its own, not the process's first imports."""
    needed: set[str] = set()
    for suite in suites:
        for case in suite.cases:
            if case.s3:
                needed.update(_MODULES["s3"])
            if case.spec.expect.sinks:
                needed.update(_MODULES["sink"])
    for module in sorted(needed):
        try:
            importlib.import_module(module)
        except ImportError:  # an optional client library: the suite said what it needs
            continue
