"""Where a worker keeps its local state: never the working directory."""

from __future__ import annotations

from pathlib import Path

from streams.datadir import default_base, worker_data_dir


def test_env_var_wins_over_xdg_state_home(tmp_path: Path) -> None:
    env = {"HEADRACE_DATA_DIR": str(tmp_path / "d"), "XDG_STATE_HOME": "/x", "HOME": "/h"}
    assert default_base(env) == tmp_path / "d"


def test_xdg_state_home_then_home() -> None:
    assert default_base({"XDG_STATE_HOME": "/x", "HOME": "/h"}) == Path("/x/headrace/workers")
    assert default_base({"HOME": "/h"}) == Path("/h/.local/state/headrace/workers")


def test_worker_dir_is_absolute_and_per_app(tmp_path: Path) -> None:
    assert worker_data_dir("app-1", tmp_path) == (tmp_path / "app-1").resolve()
    assert worker_data_dir("app-1", Path("rel")).is_absolute()
