"""`headrace demo --smoke`: one pass through every component of the stack, checked against SQL
(the shop demo itself is tests/integration/test_demo_shop.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_and_matches_sql(repo_root: Path, stack_env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace_cli.main",
            "demo",
            "--smoke",
            "--orders",
            "800",
            "--customers",
            "25",
            "--seed",
            "3",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "MariaDB orders -> Kafka                    800" in out
    assert "Faust worker: orders counted per customer  800" in out
    assert "OK: Kafka, MongoDB and DynamoDB all equal the SQL counts for all 25 customers" in out
