"""Helpers for the ``headrace test`` tests: write a pipeline and a test file, run the CLI."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from headrace_cli.main import main

Writer = Callable[[str, str], Path]
Runner = Callable[..., tuple[int, str, str]]

KAFKA = "name: t\nkafka: {bootstrap_servers: 127.0.0.1:9092}\n"


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """``write(pipeline, tests)``: ``pipeline.yaml`` (the Kafka section added) and
    ``pipeline_test.yaml`` in a fresh folder (both dedented); returns the test file."""

    def write_files(pipeline: str, tests: str) -> Path:
        (tmp_path / "pipeline.yaml").write_text(KAFKA + textwrap.dedent(pipeline))
        path = tmp_path / "pipeline_test.yaml"
        path.write_text(textwrap.dedent(tests))
        return path

    return write_files


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    """``run(*argv)``: ``headrace *argv`` in process; (exit code, stdout, stderr)."""

    def run_cli(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli
