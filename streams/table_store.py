"""Batch writes into a Faust table's local store from outside an event, whatever the store.

Faust's stores take ``table.data[key] = value`` only inside an agent's event: the RocksDB
store picks the partition's database from ``current_event()`` (and asserts there is one).
Our stage loops and lookups write whole batches outside any event, each entry with a known
changelog partition, so they go through ``write(table, partition, entries)``:

- memory store (``memory://``): the dict of decoded keys, as Faust's recovery fills it;
- RocksDB store (``rocksdb://``, driver rocksdict or python-rocksdb): one write batch into
  the partition's database, keys and values encoded with the store's own serializers (the
  bytes Faust's recovery puts there from the changelog, which are the JSON-string bytes our
  changelog messages carry), so ``table.data.get`` / ``items()`` read them back as text.

Reads need nothing special: ``table.data.get(key)`` searches every open partition database
outside an event, and ``table.data.items()`` lists the actively assigned partitions.
Entries are text (``str``) both ways; a value None deletes the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["write"]


def write(table: Any, partition: int, entries: Iterable[tuple[str, str | None]]) -> None:
    """Apply ``entries`` (key, value or None to delete) to ``table``'s local store for the
    changelog partition ``partition``."""
    store = table.data
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is None:  # memory store: a plain mapping
        for key, value in entries:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        return
    batch = _write_batch(store)
    encode_key, encode_value = store._encode_key, store._encode_value
    for key, value in entries:
        if value is None:
            batch.delete(encode_key(key))
        else:
            batch.put(encode_key(key), encode_value(value))
    db_for_partition(partition).write(batch)


def _write_batch(store: Any) -> Any:
    """An empty write batch of the store's RocksDB driver."""
    if store.use_rocksdict:
        import rocksdict

        return rocksdict.WriteBatch(raw_mode=True)
    import rocksdb  # the python-rocksdb driver (faust-streaming-rocksdb)

    return rocksdb.WriteBatch()
