"""The stream differential oracle (issue #15): generated pipelines and data, run through the
worker's stage code and the real sink writers (FerretDB, moto), compared with SQL in MariaDB.

``HEADRACE_ORACLE_CASES`` (default 150: well under a minute) cases from
``HEADRACE_ORACLE_SEED`` (default 0) on; ``make oracle N=2000`` runs more. A mismatch is
shrunk, printed with its pipeline file and data, and kept under ``found/`` as
``stream-<seed>.json``, which ``test_found_stream_cases`` replays from then on.
``test_stream_oracle_stack`` runs cases on the real stack (Kafka, a worker process killed
with -9 in some cases, sink runners).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqloracle import connect
from streamcase import generate
from streamoracle import FOUND, check_case, keep, load_found, report, shrink

CASES = int(os.environ.get("HEADRACE_ORACLE_CASES", "150"))
FIRST = int(os.environ.get("HEADRACE_ORACLE_SEED", "0"))


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    c = connect()
    yield c
    c.close()


def test_generated_stream_cases_equal_sql(conn: Any) -> None:
    failures: list[str] = []
    for seed in range(FIRST, FIRST + CASES):
        case = generate(seed)
        try:
            problems = check_case(case, conn)
        except Exception as exc:  # a crash is a mismatch too: shrink and keep it
            problems = [f"crashed: {exc!r}"]
        if problems:
            small, problems = shrink(case, conn, problems)
            failures.append(report(small, problems, keep(small, problems)))
    print(f"\nstream oracle: {CASES} generated cases from seed {FIRST}, {len(failures)} failed")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    "path", sorted(FOUND.glob("stream-*.json")) or [None], ids=lambda p: p.name if p else "none"
)
def test_found_stream_cases(conn: Any, path: Path | None) -> None:
    """Every mismatch the tester ever kept stays fixed."""
    if path is None:
        return  # none kept yet: nothing to replay
    case = load_found(path)
    problems = check_case(case, conn)
    assert not problems, report(case, problems, None)
