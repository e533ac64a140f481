"""Where a Faust worker keeps its local state (its ``datadir``), outside the working directory.

Faust defaults to ``<app-id>-data/`` in the current directory, which filled repository roots
with one folder per test run. Ours: ``<base>/<app-id>``, ``base`` being, first found:

1. the ``--data-dir`` option of ``headrace worker`` (``WorkerOptions.data_dir``);
2. ``$HEADRACE_DATA_DIR``;
3. ``$XDG_STATE_HOME/headrace/workers``, else ``~/.local/state/headrace/workers``.

With ``--store rocksdb://`` (the worker's default) it holds the table stores, which only speed
up a restart (the changelog stays the source of truth), so any local disk will do; with
``memory://`` it holds almost nothing (the state is in memory and comes back from the
changelog).

A RocksDB store is a copy of its changelog up to the offset it records, so it is only valid
while that changelog topic lives: ``drop_stale_stores`` removes, before the worker starts, the
databases of tables whose changelog topic does not exist (deleted with the rest of a
pipeline's topics, e.g. by ``headrace demo``, or never created on this cluster); they would
otherwise come back as state. A changelog that exists but is shorter than the offset a store
records stops Faust's recovery with a ``ConsistencyError`` naming the partition (remove the
worker's datadir to start over from the changelog).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "default_base", "drop_stale_stores", "worker_data_dir"]

log = logging.getLogger(__name__)

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


def drop_stale_stores(tables: Iterable[Any], topics: set[str]) -> list[Path]:
    """Remove the local RocksDB databases (``<table>-<partition>.db``) of each table in
    ``tables`` whose changelog topic is not in ``topics`` (the cluster's topics); the removed
    paths. Tables in another store are left alone. Call it before the app starts (no database
    is open yet)."""
    removed: list[Path] = []
    for table in tables:
        store = table.data
        if not hasattr(store, "partition_path"):
            continue
        changelog = table.changelog_topic.get_topic_name()
        if changelog in topics:
            continue
        first = Path(store.partition_path(0))
        prefix = first.name.removesuffix("0.db")
        for path in sorted(first.parent.glob(f"{prefix}*.db")):
            if path.name.removeprefix(prefix).removesuffix(".db").isdigit():
                log.warning(
                    "table %r: removing its local store %s: the changelog topic %r does not "
                    "exist (deleted or a new cluster), so the store holds state of an old run",
                    table.name,
                    path,
                    changelog,
                )
                shutil.rmtree(path)
                removed.append(path)
    return removed
