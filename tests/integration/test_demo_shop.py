"""The shop demo on the real stack, checked by its oracle (``headrace demo --verify``).

- ``headrace demo --verify`` on 50,000 orders (x ``HEADRACE_TEST_SCALE``) exits 0 with OK,
  and afterwards the stack's Prometheus has scraped every process of the run, and its count of
  records produced equals the count in the source topics;
- the same pipeline with the worker and one sink killed by SIGKILL midway: ``headrace run``
  restarts them and the oracle still finds every result exactly once;
- a pipeline file with a typo fails ``headrace run`` with exit 2 before anything is written;
- ``headrace demo --cdc --verify``: the CDC variant ends with MongoDB equal to the table.

The demo uses fixed names (topics ``shop.*``, MongoDB database ``shop``, DynamoDB table
``shop-orders``, MariaDB database ``shop``) and resets them itself at the start of each run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headrace.config import load_pipeline
from headrace_dev.demo.shop import PIPELINE_FILE, prepare, reset_sinks, start_run
from headrace_dev.demo.shop_verify import DYNAMO_TABLE, verify
from headrace_dev.stack import aws_client

SCALE = float(os.environ.get("HEADRACE_TEST_SCALE") or 1)


@pytest.fixture(scope="module", autouse=True)
def _drop_the_demos_sinks_after(stack_env: dict[str, str]) -> Any:
    """The tests after these share moto, which keeps DynamoDB in memory: 50,000 orders
    left there slow it for them."""
    yield
    reset_sinks(stack_env)


ORDERS = max(2000, int(50_000 * SCALE))


def _cli(repo_root: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.soak  # the demo on ORDERS orders: ~1.5 minutes
@pytest.mark.timeout(1800)
def test_demo_verify_passes(
    repo_root: Path,
    stack_env: dict[str, str],
    promql: Callable[[str], float],
    kafka_count: Callable[[str], int],
) -> None:
    began = time.time()
    result = _cli(repo_root, "demo", "--orders", str(ORDERS), "--verify", timeout=1500)
    out = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, out
    assert "OK: every sink and dead-letter topic equals the oracle" in result.stdout, out
    assert "restart #" not in result.stdout, out  # nothing crashed on the way
    assert re.search(r"DynamoDB shop-orders: \d+ items", result.stdout), out

    # The stack's Prometheus scraped every process of this run, each after its final counts:
    # the processes have exited (their series are stale now), so read each series' last
    # sample within this run's window; earlier demo runs fall outside it.
    pipeline = load_pipeline(PIPELINE_FILE)
    window = f"[{int(time.time() - began) + 5}s]"
    processes = len(pipeline.sources) + 1 + len(pipeline.sinks)  # sources, the worker, sinks
    scraped = promql(f'count(last_over_time(headrace_process_info{{pipeline="shop"}}{window}))')
    assert scraped == processes, f"Prometheus scraped {scraped:.0f} of {processes} processes"
    produced = promql(
        "sum(last_over_time(headrace_records_total"
        f'{{pipeline="shop",kind="source",outcome="produced"}}{window}))'
    )
    topics = {source.topic for source in pipeline.sources.values()}
    in_kafka = sum(kafka_count(topic) for topic in topics)
    assert produced == in_kafka > ORDERS, (produced, in_kafka, sorted(topics))


@pytest.mark.timeout(900)
def test_demo_cdc_verify_passes(repo_root: Path, stack_env: dict[str, str]) -> None:
    """``headrace demo --cdc --verify``: the snapshot, then deletes, updates and inserts read
    from the binlog, and MongoDB ends equal to SELECT * of the table."""
    result = _cli(repo_root, "demo", "--cdc", "--orders", "3000", "--verify", timeout=800)
    out = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, out
    assert re.search(r"changed shop.orders: \d+ deleted, \d+ updated \(returned\), \d+", out), out
    assert "OK   MongoDB shop.orders_cdc (the table's current rows)" in result.stdout, out
    assert "OK: every sink and dead-letter topic equals the oracle" in result.stdout, out


def _pids(log: Path) -> dict[str, int]:
    """The latest pid per process name from ``headrace run``'s own lines."""
    found: dict[str, int] = {}
    for name, pid in re.findall(r"\[run\] started (\S+) \(pid (\d+)\)", log.read_text()):
        found[name] = int(pid)
    return found


def _wait(what: str, cond: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"run exited early ({proc.returncode}):\n{_tail(log)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{_tail(log)}"
        time.sleep(0.5)


def _tail(log: Path, n: int = 60) -> str:
    return "".join(log.read_text(errors="replace").splitlines(True)[-n:])


@pytest.mark.soak  # the demo on ORDERS orders, two processes killed: ~4 minutes
@pytest.mark.timeout(1800)
def test_demo_survives_kill_9_of_worker_and_sink(stack_env: dict[str, str], tmp_path: Path) -> None:
    prepare(stack_env, orders=ORDERS, customers=300, seed=11, say=lambda _: None)
    ddb = aws_client(stack_env, "dynamodb")

    def dynamo_items() -> int:
        if DYNAMO_TABLE not in ddb.list_tables()["TableNames"]:
            return 0
        pages = ddb.get_paginator("scan").paginate(TableName=DYNAMO_TABLE, Select="COUNT")
        return sum(int(page["Count"]) for page in pages)

    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = start_run(stack_env, out, idle_timeout=1200)
        try:
            _wait("the sinks to write", lambda: dynamo_items() >= 2000, proc, log, 600)
            pids = _pids(log)
            os.kill(pids["worker"], signal.SIGKILL)
            os.kill(pids["sink:orders_dynamo"], signal.SIGKILL)
            code = proc.wait(1500)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
    text = log.read_text(errors="replace")
    assert code == 0, _tail(log)
    assert "[run] worker exited with -9; restart #1" in text, _tail(log)
    assert "[run] sink:orders_dynamo exited with -9; restart #1" in text, _tail(log)
    verdict = verify(stack_env, aws_client(stack_env, "s3"), ddb)
    report = "\n".join(
        f"{c.name}: expected {c.expected}, got {c.got}; {c.differences}" for c in verdict.checks
    )
    assert verdict.ok, report


def test_typo_in_pipeline_exits_2_before_anything_is_written(
    repo_root: Path, tmp_path: Path, stack_env: dict[str, str], unique: str
) -> None:
    text = PIPELINE_FILE.read_text().replace("name: shop", f"name: {unique}")
    text = text.replace("shop.", f"{unique}.").replace("mode: incrementing", "mode: incrementng")
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(text)
    result = _cli(repo_root, "run", "-f", str(bad), "--until-idle", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sources.orders_placed.mode: 'incrementng' is not one of" in result.stderr
    assert "[run] started" not in result.stdout  # nothing was started

    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": stack_env["HEADRACE_KAFKA_BOOTSTRAP"]})
    topics = admin.list_topics(timeout=10).topics
    assert not [t for t in topics if unique in t]  # no topic, no checkpoint was created


@pytest.fixture(autouse=True)
def _no_demo_run_left(stack_env: dict[str, str]) -> Any:
    yield
    left = subprocess.run(
        ["pgrep", "-f", f"{PIPELINE_FILE} run"], capture_output=True, text=True, check=False
    )
    assert not left.stdout.strip(), f"a demo run was left running: {left.stdout}"
