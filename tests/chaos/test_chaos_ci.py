"""The CI chaos scenario on the real local stack (``headrace chaos --scenario ci``).

The shop pipeline runs while Kafka is killed and restarted and later paused, MariaDB is
restarted, FerretDB is paused, and the worker, a sink and a source are killed or stopped. The
scenario passes only if every fault was injected and recovered from, the run went idle by
itself, every sink equals the demo's oracle exactly and no fault caused a dead letter; the
stack is healthy again afterwards (the tests after this one use it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headrace_dev.chaos.scenario import SCENARIOS
from headrace_dev.demo.shop import reset_sinks
from headrace_dev.stack import Stack, StackPaths, read_env_file

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_ci_scenario_loses_nothing_and_recovers_from_every_fault(tmp_path: Path) -> None:
    out = tmp_path / "chaos"
    result = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "chaos", "--scenario", "ci", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    tail = (result.stdout[-8000:] + "\n" + result.stderr[-4000:]).strip()
    found = json.loads((out / "results.json").read_text())
    injected = sorted(e["fault"] for r in found["rounds"] for e in r["episodes"])
    assert injected == sorted(f.name for f in SCENARIOS["ci"].faults), tail
    for rnd in found["rounds"]:
        assert rnd["run_exit"] == 0, tail
        assert rnd["oracle"], tail
        assert all(c["differences"] == 0 for c in rnd["oracle"]), rnd["oracle_lines"]
        assert rnd["stray_letters"] == {}, rnd["stray_letters"]
        assert all(e["recovery_seconds"] is not None for e in rnd["episodes"]), rnd["episodes"]
    assert result.returncode == 0 and found["ok"], tail
    assert "| kafka SIGKILL + restart | 1 |" in result.stdout, tail
    assert found["peak_rss_bytes"].get("worker", 0) > 0, found["peak_rss_bytes"]

    stack = Stack(StackPaths.from_env(REPO), log=lambda _: None)
    states = {s.name: s.state for s in stack.status()}
    assert set(states.values()) == {"running"}, states
    # the last round's sinks hold 60,000 orders: moto keeps DynamoDB in memory (1.4 GB and a
    # quarter of a core seen while later tests ran), so they are dropped for the tests after
    reset_sinks(read_env_file(stack.paths.env_file))
