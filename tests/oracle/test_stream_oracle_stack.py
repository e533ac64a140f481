"""The stream oracle on the real stack: generated cases through Kafka, a worker process (kill
-9 and restarted in one run), and the sinks' runners, compared with SQL like the in-process
cases. ``HEADRACE_ORACLE_STACK_RUNS`` runs (default 2: one without and one with a kill) of
``HEADRACE_ORACLE_STACK_CASES`` cases each (default 3)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from simulate import advance
from sqloracle import connect
from stackrun import run_cases
from streamcase import Case, generate
from streamoracle import compare_stores, keep, report

RUNS = int(os.environ.get("HEADRACE_ORACLE_STACK_RUNS", "2"))
PER_RUN = int(os.environ.get("HEADRACE_ORACLE_STACK_CASES", "3"))
FIRST = int(os.environ.get("HEADRACE_ORACLE_SEED", "0")) + 100_000


def _cases(first: int, nonce: str) -> list[Case]:
    """``PER_RUN`` cases from seed ``first`` on; the first is one whose ranking is small
    (limit 1 or 2) and written to a sink naming its id fields, so members leave the top N
    and their tombstones must find what the upserts wrote (issue #15, defect 2)."""
    cases: list[Case] = []
    seed = first
    while len(cases) < PER_RUN:
        case = generate(seed, size=60, nonce=nonce)
        seed += 1
        ranked = case.rank is not None and case.rank["limit"] <= 2
        named = any(
            s["from"] == case.topic("top") and ("id" in s or s["type"] == "dynamodb")
            for s in case.sinks.values()
        )
        if cases or (ranked and named):
            cases.append(case)
    return cases


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    c = connect()
    yield c
    c.close()


@pytest.mark.parametrize("run", range(RUNS))
def test_generated_cases_on_the_stack_equal_sql(conn: Any, run: int) -> None:
    nonce = "s" + uuid.uuid4().hex[:6]
    cases = _cases(FIRST + run * 1000, nonce)
    seeds = [c.seed for c in cases]
    kill = run % 2 == 1
    failures = []
    for case, pipe, stores, late in run_cases(cases, kill=kill, seed=seeds[0]):
        problems = compare_stores(case, conn, pipe, stores, late, advance(case, pipe))
        if problems:
            failures.append(report(case, problems, keep(case, problems)))
    print(
        f"\nstream oracle on the stack: {len(cases)} cases, kill -9: {kill}, {len(failures)} failed"
    )
    assert not failures, "\n\n".join(failures)
