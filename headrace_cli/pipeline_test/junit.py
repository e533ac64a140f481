"""JUnit XML of a ``headrace test`` run, for CI systems (``--junit-xml PATH``).

One ``<testsuite>`` per test file (``name``: the file as given), one ``<testcase>`` per case
(``classname``: the file's path with dots, ``name``: the case's name, ``time`` in seconds); a
failed case holds a ``<failure>`` whose ``message`` is its first line and whose text is the
whole diff, a case that raised an ``<error>``. The layout GitHub Actions, GitLab and Jenkins
read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from headrace_cli.pipeline_test.report import failure_text
from headrace_cli.pipeline_test.runner import CaseResult
from headrace_cli.pipeline_test.suite import Suite

__all__ = ["junit_xml", "write_junit"]


def _classname(shown: str) -> str:
    """``examples/shop/pipeline_test.yaml`` -> ``examples.shop.pipeline_test``."""
    path = Path(shown)
    parts = [p for p in path.parent.parts if p not in (path.anchor, ".", "..")]
    return ".".join([*parts, path.stem])


def junit_xml(results: Sequence[tuple[Suite, CaseResult]]) -> ET.Element:
    """The ``<testsuites>`` element of ``results`` (module doc)."""
    root = ET.Element("testsuites", name="headrace test")
    by_suite: dict[str, list[tuple[Suite, CaseResult]]] = {}
    for suite, result in results:
        by_suite.setdefault(suite.shown, []).append((suite, result))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    total_time = 0.0
    for shown, entries in by_suite.items():
        element = ET.SubElement(root, "testsuite", name=shown)
        failures = errors = 0
        seconds = 0.0
        for _suite, result in entries:
            case = ET.SubElement(
                element,
                "testcase",
                classname=_classname(shown),
                name=result.case.name,
                time=f"{result.seconds:.6f}",
            )
            seconds += result.seconds
            if result.ok:
                continue
            lines = failure_text(result)
            tag = "error" if result.error is not None else "failure"
            problem = ET.SubElement(case, tag, message=lines[0] if lines else tag)
            problem.text = "\n".join(lines)
            if tag == "error":
                errors += 1
            else:
                failures += 1
        element.set("tests", str(len(entries)))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
        element.set("time", f"{seconds:.6f}")
        totals["tests"] += len(entries)
        totals["failures"] += failures
        totals["errors"] += errors
        total_time += seconds
    for name, n in totals.items():
        root.set(name, str(n))
    root.set("time", f"{total_time:.6f}")
    return root


def write_junit(path: Path, results: Sequence[tuple[Suite, CaseResult]]) -> None:
    """Write the JUnit XML of ``results`` to ``path`` (UTF-8, with an XML declaration)."""
    tree = ET.ElementTree(junit_xml(results))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
