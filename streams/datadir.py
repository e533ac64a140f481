"""Where a Faust worker keeps its local state (its ``datadir``), outside the working directory.

Faust defaults to ``<app-id>-data/`` in the current directory, which filled repository roots
with one folder per test run. Ours: ``<base>/<app-id>``, ``base`` being, first found:

1. the ``--data-dir`` option of ``headrace worker`` (``WorkerOptions.data_dir``);
2. ``$HEADRACE_DATA_DIR``;
3. ``$XDG_STATE_HOME/headrace/workers``, else ``~/.local/state/headrace/workers``.

With ``--store memory://`` the folder holds almost nothing (the state is in memory and comes
back from the changelog); with ``rocksdb://`` it holds the stores, which only speed up a
restart (the changelog stays the source of truth), so any local disk will do.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "default_base", "worker_data_dir"]

ENV_VAR = "HEADRACE_DATA_DIR"


def default_base(environ: dict[str, str] | None = None) -> Path:
    """The base folder when no option names one (rules 2 and 3 of the module doc)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    state_home = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or "~") / ".local" / "state")
    return Path(state_home).expanduser() / "headrace" / "workers"


def worker_data_dir(app_id: str, base: Path | None = None) -> Path:
    """``<base>/<app_id>`` as an absolute path, created with its parents (Faust creates only
    the last level)."""
    path = ((base or default_base()) / app_id).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
