"""``headrace run --until-idle`` with a lookup: lookup feeders first, then the worker, then the
other sources once the worker has read the lookup topics (no Kafka: the probes are faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headrace.config import load_pipeline
from headrace_cli import run_cmd

PIPELINE = """
name: p
kafka: {bootstrap_servers: "127.0.0.1:1"}
sources:
  customers:
    type: s3
    bucket: b
    format: jsonl
    topic: customers
    key: [customer_id]
  orders:
    type: mysql
    url: mysql+pymysql://u@127.0.0.1:1/db
    table: orders
    mode: incrementing
    incrementing_column: id
    topic: orders
    key: [customer_id]
stages:
  enrich:
    from: orders
    to: enriched
    lookup: {table_from: customers, on: [customer_id], fields: [tier]}
"""


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    file = tmp_path / "pipeline.yaml"
    file.write_text(PIPELINE)
    created: list[list[str]] = []
    monkeypatch.setattr(run_cmd, "_create_topics", lambda p, topics: created.append(topics))
    monkeypatch.setattr(run_cmd._TopicProbe, "__call__", lambda self, topics: True)
    return load_pipeline(file), file, created


def _ready(specs: list[Any], name: str) -> bool:
    spec = next(s for s in specs if s.name == name)
    return spec.ready is None or bool(spec.ready())


def test_until_idle_orders_feeders_worker_then_the_rest(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe, file, created = pipeline
    done: set[str] = set()
    lags: dict[str, int] = {}
    monkeypatch.setattr("headrace_cli.idle.active_group_lag", lambda kafka, topics: dict(lags))
    monkeypatch.setattr(run_cmd._LookupsRead, "every", 0.0)
    specs = run_cmd._specs(pipe, file, True, done=done.__contains__)
    assert created == [["customers", "orders"]]  # so the worker can start before `orders` ran
    assert _ready(specs, "produce:customers")
    assert not _ready(specs, "worker") and not _ready(specs, "produce:orders")
    done.add("produce:customers")
    assert _ready(specs, "worker")
    assert not _ready(specs, "produce:orders")  # no group reads the lookup topic yet
    lags["headrace-p"] = 3
    assert not _ready(specs, "produce:orders")
    lags["headrace-p"] = 0
    assert _ready(specs, "produce:orders")


def test_long_running_or_without_lookups_starts_everything_at_once(pipeline: Any) -> None:
    pipe, file, created = pipeline
    specs = run_cmd._specs(pipe, file, False, done=lambda name: False)
    assert all(_ready(specs, s.name) for s in specs) and created == []


def test_until_idle_gives_the_worker_the_input_complete_marker(
    pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --until-idle the worker closes windows by its idle timer only once the run says
    the input is complete; the idle check creates the marker when every source finished and
    every lag is 0, and not before."""
    pipe, file, _created = pipeline
    marker = tmp_path / "input-done"
    specs = run_cmd._specs(pipe, file, True, done=lambda name: False, input_done=marker)
    worker = next(s for s in specs if s.name == "worker")
    assert list(worker.argv[-2:]) == ["--input-done-file", str(marker)]
    long_running = run_cmd._specs(pipe, file, False, done=lambda name: False, input_done=marker)
    assert "--input-done-file" not in next(s for s in long_running if s.name == "worker").argv

    class Sup:
        def __init__(self) -> None:
            self.finished = False
            self.said: list[str] = []

        def finite_done(self) -> bool:
            return self.finished

        def say(self, line: str) -> None:
            self.said.append(line)

        def status(self) -> list[Any]:
            return []

    lags = {"headrace-p": 4, "headrace.p.sink.s": 0}
    monkeypatch.setattr("headrace_cli.idle.active_group_lag", lambda kafka, topics: dict(lags))
    sup = Sup()
    check = run_cmd._IdleCheck(pipe, sup, every=0.0, input_done=marker)  # type: ignore[arg-type]
    assert not check() and not marker.exists()  # sources still running
    sup.finished = True
    assert not check() and not marker.exists()  # lag left
    lags["headrace-p"] = 0
    check()
    assert marker.exists() and any("closing open windows" in line for line in sup.said)
