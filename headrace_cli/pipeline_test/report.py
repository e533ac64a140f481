"""What ``headrace test`` prints: a line per case as it runs, then each failure's diff, then
one summary line, the way pytest reports.

::

    examples/shop/pipeline_test.yaml (pipeline examples/shop/pipeline.yaml)
      PASSED  clean: an order gets its customer's name and tier  (1.2 ms)
      FAILED  revenue: a late order is a dead letter  (2.3 ms)

    ======================== FAILURES ========================
    ___ examples/shop/pipeline_test.yaml::revenue: a late order is a dead letter ___
    tests[3] expect["shop.revenue"]: records, in order: 2 expected, 3 produced
      = #1 {key: [c1, gold, 1714564800000], value: {...}}
      ~ #2 differs:
          expected {...}
          actual   {...}
          value.revenue: expected '19.00', got '28.50'

    =========== 11 passed, 1 failed in 0.31 s (cases: 14.2 ms, slowest 2.3 ms) ===========
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import TextIO

from headrace_cli.pipeline_test.runner import CaseResult
from headrace_cli.pipeline_test.suite import Suite

__all__ = ["Reporter", "failure_text"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def failure_text(result: CaseResult) -> list[str]:
    """The lines explaining why ``result`` did not pass (none if it did)."""
    if result.error is not None:
        return [f"error: {result.error}"]
    lines: list[str] = []
    for check in result.checks:
        if check.ok:
            continue
        head, *rest = check.lines
        lines.append(f"tests[{result.case.index}].{check.where}: {head}")
        lines += [f"  {line}" for line in rest]
    return lines


class Reporter:
    """Writes the report to ``out`` (see the module doc)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.width = max(60, min(120, shutil.get_terminal_size((100, 20)).columns))

    def _line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def _rule(self, title: str, char: str = "=") -> None:
        title = f" {title} "
        side = max(3, (self.width - len(title)) // 2)
        self._line(char * side + title + char * side)

    def suite(self, suite: Suite) -> None:
        """Announce a file's cases."""
        self._line(f"{suite.shown} (pipeline {suite.pipeline_shown})")

    def case(self, result: CaseResult) -> None:
        """One case's line, as soon as it ran."""
        self._line(f"  {result.status:<7} {result.case.name}  ({_ms(result.seconds)})")
        self.out.flush()

    def failures(self, results: Sequence[tuple[Suite, CaseResult]]) -> None:
        """The diff of every case that did not pass."""
        failed = [(s, r) for s, r in results if not r.ok]
        if not failed:
            return
        self._line()
        self._rule("FAILURES")
        for suite, result in failed:
            self._rule(f"{suite.shown}::{result.case.name}", "_")
            for line in failure_text(result):
                self._line(line)
            self._line()

    def summary(self, results: Sequence[tuple[Suite, CaseResult]], seconds: float) -> None:
        """The last line: counts, the time in all, the cases' own time and the slowest."""
        counts: dict[str, int] = {}
        for _suite, result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        parts = [
            f"{counts[s]} {word}"
            for s, word in (("PASSED", "passed"), ("FAILED", "failed"), ("ERROR", "errors"))
            if counts.get(s)
        ]
        case_time = sum(r.seconds for _s, r in results)
        slowest = max((r.seconds for _s, r in results), default=0.0)
        self._rule(
            f"{', '.join(parts) or 'no cases'} in {seconds:.2f} s "
            f"(cases: {_ms(case_time)}, slowest {_ms(slowest)})"
        )
