"""A bad test file exits 2 before anything runs, each problem on a line naming the file, the
key path and the fix, as ``headrace check`` reports pipeline files."""

from __future__ import annotations

import pytest

PIPELINE = """\
topics: [orders, customers]
sources:
  landing:
    type: s3
    bucket: landing
    format: jsonl
    topic: landed
stages:
  enrich:
    from: orders
    to: orders.enriched
    lookup: {table_from: customers, on: [customer_id], fields: [name]}
"""


@pytest.mark.parametrize(
    ("case", "line"),
    [
        pytest.param(
            "stages: [enrich]\n    input: {orders: [{value: {id: 1}}]}\n"
            "    expect: {orders.enriched: []}\n    advanse: 1m",
            "tests[0].advanse: unknown key (did you mean 'advance'?)",
            id="a typo",
        ),
        pytest.param(
            "stages: [enrch]\n    expect: {orders.enriched: []}",
            "tests[0].stages[0]: no stage 'enrch' in the pipeline (did you mean 'enrich'?) "
            "(stages: enrich)",
            id="an unknown stage",
        ),
        pytest.param(
            "stages: [enrich]\n    input: {order: [{value: {id: 1}}]}\n"
            "    expect: {orders.enriched: []}",
            "tests[0].input.order: nothing in this case reads 'order' (did you mean 'orders'?)",
            id="an input nobody reads",
        ),
        pytest.param(
            "stages: [enrich]\n    expect: {orders.enrich: []}",
            "tests[0].expect[\"orders.enrich\"]: nothing in this case writes 'orders.enrich' "
            "(did you mean 'orders.enriched'?)",
            id="an expected topic nobody writes",
        ),
        pytest.param(
            "stages: [enrich]\n    expect: {orders.enriched: {count: many}}",
            "tests[0].expect[\"orders.enriched\"].count: expected a whole number, got 'many'",
            id="a bad count, named under expect as written",
        ),
        pytest.param(
            "stages: [enrich]\n    input: {orders: [{value: {id: 1}, partition: 3}]}\n"
            "    expect: {orders.enriched: []}",
            "tests[0].input.orders[0].partition: partition 3 does not exist: the case has 1 "
            "partition(s) per topic",
            id="a partition out of range",
        ),
        pytest.param(
            "stages: [enrich]\n    input: {orders: [{value: {id: 1}, time: yesterday}]}\n"
            "    expect: {orders.enriched: []}",
            "tests[0].input.orders[0].time: 'yesterday' is not a time; write an ISO-8601 time",
            id="a bad time",
        ),
        pytest.param(
            "stages: [enrich]\n    input: {orders: [{key: 1}]}\n    expect: {orders.enriched: []}",
            "tests[0].input.orders[0]: a record needs value (null for a tombstone), raw, or file",
            id="a record without a value",
        ),
        pytest.param(
            "sources: {landing: {rows: [{id: 1}]}}\n    expect: {landed: []}",
            "tests[0].sources.landing.rows: source 'landing' is s3: give objects, body or file",
            id="rows for an S3 source",
        ),
        pytest.param(
            "stages: [enrich]\n    expect: {orders.enriched: {all: 'id >'}}",
            'tests[0].expect["orders.enriched"].all: invalid expression at column',
            id="a bad expression",
        ),
        pytest.param(
            "stages: [enrich]\n    expect: {rate_limit: {enrich: {shed: 0}}}",
            "tests[0].expect.rate_limit.enrich: 'enrich' is not a rate-limited stage of this case",
            id="a rate limit the stage does not have",
        ),
        pytest.param(
            "stages: [enrich]\n    expect: {sinks: {store: []}}",
            "tests[0].expect.sinks.store: no sink 'store' in the pipeline",
            id="an unknown sink",
        ),
        pytest.param(
            "expect: {orders.enriched: []}",
            "tests[0]: a case runs something: name stages, feed sources, or expect what a sink "
            "writes",
            id="nothing to run",
        ),
    ],
)
def test_a_bad_case_is_named_by_its_key_path(write, run, case: str, line: str) -> None:
    path = write(PIPELINE, f"tests:\n  - name: bad\n    {case}\n")
    code, out, err = run("test", path)
    assert code == 2, out + err
    assert f"{path}: {line}" in err, err
    assert out == ""  # nothing ran


def test_every_problem_of_a_file_is_listed(write, run) -> None:
    path = write(
        PIPELINE,
        """\
        tests:
          - name: one
            stages: [nope]
            expect: {orders.enriched: []}
          - name: one
            stages: [enrich]
            expect: {elsewhere: []}
        """,
    )
    code, _out, err = run("test", path)
    assert code == 2
    assert "tests[1].name: 'one' is also the name of tests[0]" in err
    path.write_text(
        path.read_text().replace(
            "name: one\n    stages: [enrich]", "name: two\n    stages: [enrich]"
        )
    )
    code, _out, err = run("test", path)
    assert code == 2
    assert "tests[0].stages[0]: no stage 'nope'" in err
    assert "tests[1].expect.elsewhere: nothing in this case writes 'elsewhere'" in err


def test_a_file_that_is_not_yaml_says_where(write, run) -> None:
    path = write(PIPELINE, "tests:\n  - name: [unclosed\n")
    code, _out, err = run("test", path)
    assert code == 2
    assert f"{path}: line 3, column 1: YAML syntax error" in err


def test_a_missing_pipeline_is_named(tmp_path, run) -> None:
    path = tmp_path / "orders_test.yaml"
    path.write_text("tests: [{name: x, stages: [a], expect: {t: []}}]\n")
    code, _out, err = run("test", path)
    assert code == 2
    assert "pipeline: the pipeline file" in err and "orders.yaml" in err


def test_a_pipeline_without_tests_says_where_to_write_them(tmp_path, run) -> None:
    (tmp_path / "pipeline.yaml").write_text("name: x\n")
    code, _out, err = run("test", tmp_path / "pipeline.yaml")
    assert code == 2
    assert "no tests for this pipeline; write them in pipeline_test.yaml beside it" in err


def test_no_case_matching_k_is_an_error(write, run) -> None:
    path = write(
        PIPELINE, "tests: [{name: one, stages: [enrich], expect: {orders.enriched: []}}]\n"
    )
    code, _out, err = run("test", path, "-k", "two")
    assert code == 2
    assert "no case's name contains 'two' (-k)" in err


def test_tests_inside_a_pipeline_file_run_and_every_command_accepts_the_key(write, run) -> None:
    path = write(PIPELINE, "tests: []\n").with_name("pipeline.yaml")
    cases = (
        "tests:\n"
        "  - name: one\n    stages: [enrich]\n    expect: {orders.enriched: []}\n"
        "  - name: two\n    stages: [enrch]\n    expect: {orders.enriched: []}\n"
    )
    path.write_text(path.read_text() + cases)
    path.with_name("pipeline_test.yaml").unlink()
    code, _out, err = run("test", path)
    assert code == 2  # the second case names no stage of the file: found in the file itself
    assert "tests[1].stages[0]: no stage 'enrch'" in err
    path.write_text(path.read_text().replace("[enrch]", "[enrich]"))
    code, out, err = run("test", path)
    assert code == 0, err
    assert "2 passed" in out
    code, _out, err = run("check", "-f", path)
    assert code == 0, err


def test_a_folder_runs_every_test_file_under_it(write, run) -> None:
    path = write(
        PIPELINE, "tests: [{name: one, stages: [enrich], expect: {orders.enriched: []}}]\n"
    )
    (path.parent / "more").mkdir()
    (path.parent / "more" / "again_test.yaml").write_text(
        "pipeline: ../pipeline.yaml\n"
        "tests: [{name: two, stages: [enrich], expect: {orders.enriched: []}}]\n"
    )
    code, out, err = run("test", path.parent)
    assert code == 0, out + err
    assert "PASSED  one" in out and "PASSED  two" in out
    code, out, _err = run("test", path.parent, "-k", "TWO")
    assert "PASSED  two" in out and "one" not in out.split("\n", 1)[1]
