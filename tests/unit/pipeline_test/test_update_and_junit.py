"""``--update`` rewrites only the failed expectations (after asking), keeping the rest of the
file; ``--junit-xml`` writes what CI systems read."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

PIPELINE = """\
topics: [orders]
stages:
  priced:
    from: orders
    to: orders.priced
    transform: [{set: {total: "price * quantity"}}]
"""

TESTS = """\
# the file's own comment stays
tests:
  - name: passes and is left alone
    stages: [priced]
    input: {orders: [{value: {price: 2, quantity: 3}}]}
    expect:
      orders.priced: [{value: {price: 2, quantity: 3, total: 6}}]  # as written

  - name: a new case without its expectations yet
    stages: [priced]
    input:
      orders:
        - {key: a, value: {price: 2, quantity: 4}, time: "2024-05-01T12:00:00Z"}
    expect:
      orders.priced: []   # filled by --update
      dead_letters: []

  - name: counts and subsets keep their form
    stages: [priced]
    input: {orders: [{value: {price: 1, quantity: 1}}, {value: {price: 1, quantity: 2}}]}
    expect:
      orders.priced:
        count: 5
        subset: true
"""


def test_update_writes_what_was_produced_into_the_failed_expectations_only(
    write, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(PIPELINE, TESTS)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    code, out, _ = run("test", path, "--update")
    assert code == 0, out
    assert "--update would rewrite 2 expectation(s):" in out
    assert 'a new case without its expectations yet: expect["orders.priced"]' in out
    assert "Write them? [y/N]" in out
    text = path.read_text()
    assert text.startswith("# the file's own comment stays\n")
    assert "orders.priced: [{value: {price: 2, quantity: 3, total: 6}}]  # as written" in text
    assert (
        "      orders.priced:\n"
        "        - key: a\n"
        "          value: {price: 2, quantity: 4, total: 8}\n"
        "          time: '2024-05-01T12:00:00Z'   # filled by --update\n"
    ) in text
    assert "      dead_letters: []\n" in text  # it passed: untouched
    assert "        count: 2\n        subset: true\n" in text
    code, out, _ = run("test", path)
    assert code == 0, out


def test_update_writes_nothing_unless_confirmed(
    write, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(PIPELINE, TESTS)
    before = path.read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    code, out, _ = run("test", path, "--update")
    assert code == 1
    assert "nothing written" in out
    assert path.read_text() == before


def test_update_yes_does_not_ask(write, run, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(PIPELINE, TESTS)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, _ = run("test", path, "--update", "--yes")
    assert code == 0
    assert "Write them?" not in out


def test_contains_and_expressions_are_left_to_a_person(write, run) -> None:
    path = write(
        PIPELINE,
        """\
        tests:
          - name: partial
            stages: [priced]
            input: {orders: [{value: {price: 2, quantity: 3}}]}
            expect:
              orders.priced:
                contains: [{value: {total: 7}}]
                subset: true
                all: "total > 10"
        """,
    )
    before = path.read_text()
    code, out, _ = run("test", path, "--update", "--yes")
    assert code == 1
    assert (
        "not updated: " in out
        and 'expect["orders.priced"]: contains or an expression failed' in out
    )
    assert path.read_text() == before


def test_junit_xml_has_a_suite_per_file_and_a_failure_per_failed_case(
    write, run, tmp_path: Path
) -> None:
    path = write(PIPELINE, TESTS)
    report = tmp_path / "out" / "junit.xml"
    code, out, _ = run("test", path, "--junit-xml", report)
    assert code == 1
    assert f"JUnit XML: {report}" in out
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == str(path)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "passes and is left alone",
        "a new case without its expectations yet",
        "counts and subsets keep their form",
    ]
    assert cases[0].find("failure") is None
    failure = cases[2].find("failure")
    assert failure is not None
    assert (
        failure.get("message") == 'tests[2].expect["orders.priced"]: count: 5 expected, 2 produced'
    )
    assert "#1 {value: {price: 1, quantity: 1, total: 1}}" in (failure.text or "")
    assert float(cases[1].get("time") or 0) > 0
