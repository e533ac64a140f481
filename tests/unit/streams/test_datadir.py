"""Where a worker keeps its local state: never the working directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_stale_rocksdb_stores_are_removed_only_without_their_changelog(tmp_path: Path) -> None:
    import faust

    from streams.datadir import drop_stale_stores
    from streams.table_store import write

    app = faust.App(
        "dd-unit", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path)
    )
    kept = app.Table("kept-state", default=None, partitions=2)
    gone = app.Table("gone-state", default=None, partitions=2)
    gone_more = app.Table("gone-state-more", default=None, partitions=2)
    for table in (kept, gone, gone_more):
        write(table, 0, [("k", "v")])
        write(table, 1, [("k", "v")])
        store: Any = table.data  # faust types it a MutableMapping: here, the RocksDB store
        store._dbs.clear()  # closed, as before a worker starts
    topics = {kept.changelog_topic.get_topic_name(), gone_more.changelog_topic.get_topic_name()}

    removed = drop_stale_stores([kept, gone, gone_more], topics)

    assert [p.name for p in removed] == ["gone-state-0.db", "gone-state-1.db"]
    assert all(not p.exists() for p in removed)
    kept_store: Any = kept.data
    gone_more_store: Any = gone_more.data
    assert kept_store.partition_path(0).exists() and gone_more_store.partition_path(1).exists()


def test_memory_stores_have_nothing_to_remove(tmp_path: Path) -> None:
    import faust

    from streams.datadir import drop_stale_stores

    app = faust.App(
        "dd-unit-m", broker="kafka://127.0.0.1:1", store="memory://", datadir=str(tmp_path)
    )
    assert drop_stale_stores([app.Table("t", default=None)], set()) == []
