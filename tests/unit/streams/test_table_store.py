"""streams.table_store: batch writes outside an event, same result as Faust's recovery."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
from faust.types import TP

from streams import table_store


def _table(tmp_path: Path, store: str) -> Any:
    app = faust.App("ts-unit", broker="kafka://127.0.0.1:1", store=store, datadir=str(tmp_path))
    return app.Table(
        "s-state",
        default=None,
        partitions=3,
        schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
    )


def _changelog_event(partition: int, offset: int, key: str, value: str | None) -> Any:
    """A changelog event as Faust's recovery hands it to a store: our message bytes."""
    message = SimpleNamespace(
        tp=TP("ts-unit-s-state-changelog", partition),
        partition=partition,
        offset=offset,
        key=orjson.dumps(key),
        value=None if value is None else orjson.dumps(value),
    )
    return SimpleNamespace(message=message)


def test_rocksdb_writes_land_in_the_partition_database_as_recovery_would(tmp_path: Path) -> None:
    ours = _table(tmp_path / "a", "rocksdb://")
    table_store.write(ours, 2, [('["w",2,"g"]', "v1"), ('["o",2]', "m"), ('["o",2]', None)])
    recovered = _table(tmp_path / "b", "rocksdb://")
    recovered.data.apply_changelog_batch(
        [_changelog_event(2, 0, '["w",2,"g"]', "v1"), _changelog_event(2, 1, '["o",2]', None)],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )

    def contents(table: Any) -> list[tuple[bytes, bytes]]:
        db = table.data._db_for_partition(2)
        return [(k, v) for k, v in db.items() if k != table.data.offset_key]

    assert contents(ours) == contents(recovered) == [(b'"[\\"w\\",2,\\"g\\"]"', b'"v1"')]
    assert ours.data.get('["w",2,"g"]') == "v1"  # read back as text outside an event
    assert ours.data.get('["o",2]') is None
    assert not any(k != ours.data.offset_key for k in ours.data._db_for_partition(0).keys())


def test_memory_store_is_a_plain_mapping_of_text(tmp_path: Path) -> None:
    table = _table(tmp_path, "memory://")
    table_store.write(table, 1, [("a", "1"), ("b", "2")])
    table_store.write(table, 1, [("a", None), ("c", None)])
    assert dict(table.data.items()) == {"b": "2"}
