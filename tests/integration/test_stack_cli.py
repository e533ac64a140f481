"""``headrace stack status|up|logs`` against the running local stack (the CLI as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPONENTS = ["kafka", "mariadb", "ferretdb", "moto", "prometheus"]


def _headrace(
    repo_root: Path, stack_dir: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HEADRACE_STACK_DIR=str(stack_dir))
    try:
        return subprocess.run(
            [sys.executable, "-m", "headrace_cli.main", *args],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`headrace {' '.join(args)}` did not finish within {timeout:.0f}s: {exc}")


def _pids(stack_dir: Path) -> dict[str, int]:
    """The pid recorded for each component (first field of ``.stack/run/<name>.pid``)."""
    pids = {}
    for name in COMPONENTS:
        pid_file = stack_dir / "run" / f"{name}.pid"
        assert pid_file.is_file(), f"{pid_file} is missing; run `headrace stack up`"
        pids[name] = int(pid_file.read_text().split()[0])
    return pids


def _status_rows(stdout: str) -> dict[str, list[str]]:
    """Rows of the status table printed by ``stack status`` and ``stack up``, by component."""
    return {
        cells[0]: cells
        for cells in (line.split() for line in stdout.splitlines())
        if cells and cells[0] in COMPONENTS
    }


def _output(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_status_lists_every_component_running(stack_env, repo_root, stack_dir):
    done = _headrace(repo_root, stack_dir, "stack", "status")
    assert done.returncode == 0, _output(done)
    rows = _status_rows(done.stdout)
    assert sorted(rows) == sorted(COMPONENTS), _output(done)
    pids = _pids(stack_dir)
    for name, cells in rows.items():
        assert cells[1] == "running", f"{name}: {cells}"
        assert cells[2] == str(pids[name]), f"{name}: status pid {cells[2]}, pid file {pids[name]}"


def test_second_up_leaves_every_process_alone(stack_env, repo_root, stack_dir):
    before = _pids(stack_dir)
    done = _headrace(repo_root, stack_dir, "stack", "up", timeout=300)
    assert done.returncode == 0, _output(done)
    assert _pids(stack_dir) == before
    states = {name: cells[1] for name, cells in _status_rows(done.stdout).items()}
    assert states == dict.fromkeys(COMPONENTS, "running"), _output(done)
    assert (stack_dir / "env").is_file()


def test_logs_prints_the_last_lines(stack_env, repo_root, stack_dir):
    done = _headrace(repo_root, stack_dir, "stack", "logs", "kafka", "-n", "5")
    assert done.returncode == 0, _output(done)
    lines = done.stdout.splitlines()
    assert len(lines) == 5, _output(done)
    # The broker may log more between the CLI's read and ours: compare with the whole file.
    log_lines = set((stack_dir / "logs" / "kafka.log").read_text(errors="replace").splitlines())
    assert set(lines) <= log_lines
