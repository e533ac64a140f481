"""``ensure_quix``: the Quix Streams peer's venv is built once, rebuilt when half-built, and a
failed step names the command and how to retry."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from headrace.errors import HeadraceError
from headrace_dev.bench import quix_peer


class _Runs:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            python = Path(argv[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
        failed = self.fail_on is not None and self.fail_on in argv
        return subprocess.CompletedProcess(argv, 1 if failed else 0, "", "no route to PyPI")


def test_builds_once_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _Runs()
    monkeypatch.setattr(subprocess, "run", runs)
    python = quix_peer.ensure_quix(tmp_path, log=lambda _m: None)
    home = tmp_path / "peers" / f"quixstreams-{quix_peer.QUIX_VERSION}"
    assert python == home / "bin" / "python"
    assert [c[1:3] for c in runs.calls] == [["-m", "venv"], ["-m", "pip"]]
    assert f"quixstreams=={quix_peer.QUIX_VERSION}" in runs.calls[1]
    assert quix_peer.ensure_quix(tmp_path, log=lambda _m: None) == python
    assert len(runs.calls) == 2  # the marker says it is built


def test_a_half_built_venv_is_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "peers" / f"quixstreams-{quix_peer.QUIX_VERSION}"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "python").write_text("")  # no marker: the install was interrupted
    runs = _Runs()
    monkeypatch.setattr(subprocess, "run", runs)
    quix_peer.ensure_quix(tmp_path, log=lambda _m: None)
    assert len(runs.calls) == 2
    assert (home / ".installed").read_text().strip() == quix_peer.QUIX_VERSION


def test_a_failed_install_names_the_step_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", _Runs(fail_on="install"))
    with pytest.raises(HeadraceError, match=r"install.*exit 1.*no route to PyPI.*remove"):
        quix_peer.ensure_quix(tmp_path, log=lambda _m: None)
    home = tmp_path / "peers" / f"quixstreams-{quix_peer.QUIX_VERSION}"
    assert not (home / ".installed").exists()
