"""One stream-oracle case end to end: generate, run, compute with SQL, compare, shrink.

``check_case(case, conn)`` returns the differences (empty: the sinks equal SQL). On a
difference, ``shrink`` drops records while the difference stays, and ``keep`` writes the
shrunk case under ``tests/oracle/found/`` (``stream-<seed>.json``), where
``test_stream_oracle`` replays it from then on as a regression case.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import yaml
from compare import diff
from simulate import Simulation, advance, produce, sink_records, write_sink
from sqloracle import expected
from streamcase import Case, Order, agg_key_fields, pipeline, rank_key_fields

from connectors.dynamodb import DynamoDBSink
from headrace.config import Pipeline, load_pipeline
from headrace_dev.stack import read_env_file

FOUND = Path(__file__).resolve().parent / "found"
REPO = Path(__file__).resolve().parents[2]


def _stack_endpoints() -> dict[str, str]:
    """The local stack's MongoDB and moto endpoints (``.stack/env``, as ``sqloracle.connect``
    reads MariaDB's), else the default ports. Before, the defaults were used always: a
    stack on other ports (``HEADRACE_STACK_*_PORT``) left every case waiting for a MongoDB
    that was not there (10 s per attempt, for every case and every shrink step)."""
    defaults = {
        "HEADRACE_MONGO_URI": "mongodb://127.0.0.1:27017",
        "HEADRACE_AWS_ENDPOINT": "http://127.0.0.1:5000",
    }
    stack = Path(os.environ.get("HEADRACE_STACK_DIR") or REPO / ".stack")
    found = read_env_file(stack / "env") if (stack / "env").is_file() else {}
    return {k: os.environ.get(k) or found.get(k) or v for k, v in defaults.items()}


ENV = _stack_endpoints()


def load(case: Case, env: dict[str, str] | None = None) -> Pipeline:
    """The case's pipeline, through the loader and validation ``headrace check`` uses."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(pipeline(case), sort_keys=False))
        return load_pipeline(path, env={**ENV, **(env or {})})


def fields_of(case: Case, topic: str) -> tuple[list[str], list[str]]:
    """(key fields, compared fields) of the case's ``agg`` or ``top`` topic."""
    agg = [*case.group_by, "window_start", "window_end", *case.measures]
    if topic == "agg":
        return agg_key_fields(case), agg
    return rank_key_fields(case), [*agg, "rank"]


def check_case(case: Case, conn: Any, env: dict[str, str] | None = None) -> list[str]:
    """Run ``case`` in process (``simulate``) and compare every sink with SQL."""
    rng = random.Random(case.seed * 7919 + len(case.orders))
    pipe = load(case, env)
    sim = Simulation(pipe, case.partitions, rng, replays=True)
    # each phase is processed through every stage before the next one is produced (the
    # stack runner waits for the worker's lag to reach 0): what is late is then decided
    produce(sim.topic(case.topic("in")), [o for o in case.orders if o.phase == "A"], rng)
    sim.run()
    closing = advance(case, pipe)
    produce(sim.topic(case.topic("in")), closing, rng)
    sim.run()
    produce(sim.topic(case.topic("in")), [o for o in case.orders if o.phase == "C"], rng)
    sim.run()
    stores = {
        name: write_sink(name, pipe, sink_records(sim.topic(sink.from_), rng), rng, replays=True)
        for name, sink in pipe.sinks.items()
    }
    agg_stage = next(s for s in pipe.stages.values() if s.aggregate is not None)
    letters = sum(len(p) for p in sim.topic(agg_stage.from_ + ".dlq").parts)
    return compare_stores(case, conn, pipe, stores, letters, closing)


def compare_stores(
    case: Case,
    conn: Any,
    pipe: Pipeline,
    stores: dict[str, tuple[list[dict[str, Any]], list[str]]],
    late_letters: int,
    closing: list[Order],
) -> list[str]:
    """Differences between SQL's answer and what each sink holds (``stores``: sink name ->
    (rows, what its writer rejected)), and between the late records and the dead letters of
    the aggregate's input (``late_letters``: distinct letters). ``closing``: the records that
    closed phase A's windows (``simulate.advance``)."""
    agg, top, late = expected(conn, case, closing)
    problems: list[str] = []
    for name, sink in pipe.sinks.items():
        topic = sink.from_.rsplit(".", 1)[1]
        key, fields = fields_of(case, topic)
        rows = agg if topic == "agg" else top
        assert rows is not None
        stored, rejected = stores[name]
        if sink.type == "dynamodb":
            assert isinstance(sink, DynamoDBSink)
            ids = [sink.partition_key, *([sink.sort_key] if sink.sort_key else [])]
            refused = [r for r in rows if any(r.get(k) in (None, "") for k in ids)]
            rows = [r for r in rows if r not in refused]  # DynamoDB has no null key: DLQ
            if len(rejected) < len(refused):
                problems.append(
                    f"{name}: {len(refused)} rows with a null key, {len(rejected)} rejected"
                )
        elif rejected:
            problems.append(f"{name}: rejected {rejected[:3]}")
        problems += diff(name, rows, stored, key, fields)
    if late_letters != late:
        problems.append(f"dead letters of the aggregate's input: {late_letters}, expected {late}")
    return problems


def shrink(case: Case, conn: Any, failing: list[str]) -> tuple[Case, list[str]]:
    """A smaller case that still fails (greedy: drop halves, quarters... of the records)."""
    chunk = max(1, len(case.orders) // 2)
    while chunk >= 1:
        i, changed = 0, False
        while i < len(case.orders):
            trial = dataclasses.replace(case, orders=case.orders[:i] + case.orders[i + chunk :])
            if any(o.phase == "A" and o.value is not None for o in trial.orders):
                try:
                    found = check_case(trial, conn)
                except Exception as exc:  # a crash is a failure too
                    found = [f"crashed: {exc!r}"]
                if found:
                    case, failing, changed = trial, found, True
                    continue
            i += chunk
        if not changed:
            chunk //= 2
    return case, failing


def keep(case: Case, problems: list[str]) -> Path:
    """Write ``case`` under ``found/`` and return the path."""
    FOUND.mkdir(exist_ok=True)
    path = FOUND / f"stream-{case.seed}.json"
    data = dataclasses.asdict(case)
    data["problems"] = problems
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def load_found(path: Path) -> Case:
    data = json.loads(path.read_text())
    data.pop("problems", None)
    data["orders"] = [Order(**o) for o in data["orders"]]
    return Case(**data)


def report(case: Case, problems: list[str], path: Path | None) -> str:
    lines = [
        f"stream oracle mismatch, {case.describe()}",
        f"reproduce: make oracle N=1 SEED={case.seed} (or replay {FOUND}/stream-{case.seed}.json)",
        "pipeline:",
        yaml.safe_dump(pipeline(case), sort_keys=False),
        "records (phase, key, value, event time):",
        *(f"  {o.phase} {o.key_value!r} {o.value!r} {o.ts}" for o in case.orders),
        "differences:",
        *(f"  {p}" for p in problems[:40]),
    ]
    if path is not None:
        lines.append(f"kept as {path}")
    return "\n".join(lines)
