"""examples/shop/pipeline_test.yaml: it covers every stage, source and sink of the shop
pipeline, passes, each case runs in under 100 ms, and copies of the pipeline broken on
purpose fail with a readable diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headrace_cli.pipeline_test.runner import run_case, warm_up
from headrace_cli.pipeline_test.suite import load_suite

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
TESTS = SHOP / "pipeline_test.yaml"


def test_the_example_covers_every_stage_source_and_sink() -> None:
    suite = load_suite(TESTS)
    cases = [c.spec for c in suite.cases]
    staged = {s for c in cases for s in c.stages}
    fed = {s for c in cases for s in c.sources}
    sunk = {s for c in cases for s in c.expect.sinks}
    assert staged == set(suite.pipeline.stages)
    assert fed == set(suite.pipeline.sources)
    assert sunk == set(suite.pipeline.sinks)


def test_the_example_passes(run) -> None:
    code, out, _err = run("test", TESTS)
    assert code == 0, out
    assert "15 passed" in out


def test_each_case_runs_in_under_100_ms() -> None:
    suite = load_suite(TESTS)
    warm_up([suite])
    for case in suite.cases:
        best = min(run_case(suite, case).seconds for _ in range(3))  # a loaded machine
        assert best < 0.1, f"{case.name}: {best * 1000:.1f} ms"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the shop example whose pipeline has ``old`` replaced by ``new``."""
    shutil.copytree(SHOP, tmp_path / "shop")
    pipeline = tmp_path / "shop" / "pipeline.yaml"
    text = pipeline.read_text()
    assert text.count(old) == 1, old
    pipeline.write_text(text.replace(old, new))
    return tmp_path / "shop" / "pipeline_test.yaml"


@pytest.mark.parametrize(
    ("old", "new", "failed", "lines"),
    [
        pytest.param(
            "function: dense_rank",
            "function: row_number",
            "customers with equal revenue share a rank",
            [
                '"shop.top10"]: records, in order: 3 expected, 3 produced',
                "~ #2 differs:",
                "value.rank: expected 1, got 2",
                "value.rank: expected 2, got 3",
            ],
            id="ties ranked one after the other",
        ),
        pytest.param(
            "grace: 5s",
            "grace: 0s",
            "a window is emitted once the watermark passes its end plus grace",
            ["value.revenue: expected '6.25', got '4.25'", "value.orders: expected 2, got 1"],
            id="no grace",
        ),
        pytest.param(
            "missing: dlq",
            "missing: keep",
            "an order for an unknown customer is a dead letter",
            [
                "+ #1 produced, not expected: {key: c99999",
                "- expected, not produced: {topic: shop.orders.placed, stage: clean",
            ],
            id="unknown customers kept",
        ),
        pytest.param(
            'filter: "quantity > 0"',
            'filter: "quantity >= 0"',
            "clean adds the customer's name and tier and the order's total",
            ["+ #2 produced, not expected: {key: c00001, value: {id: 2"],
            id="empty orders let through",
        ),
    ],
)
def test_a_broken_pipeline_fails_with_a_readable_diff(
    tmp_path: Path, run, old: str, new: str, failed: str, lines: list[str]
) -> None:
    code, out, _err = run("test", _broken(tmp_path, old, new))
    assert code == 1, out
    assert f"FAILED  {failed}" in out
    failures = out.split("FAILURES", 1)[1]
    for line in lines:
        assert line in failures, f"{line!r} not in:\n{failures}"
