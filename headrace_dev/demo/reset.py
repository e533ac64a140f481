"""Forgetting an earlier demo run in Kafka: its topics, by name prefix."""

from __future__ import annotations

import time
from collections.abc import Sequence

from headrace.errors import HeadraceError

__all__ = ["delete_topics"]


def delete_topics(bootstrap: str, prefixes: Sequence[str], timeout: float = 60.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` and wait until the
    broker no longer lists them; return their names. HeadraceError after ``timeout``."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    old = [t for t in admin.list_topics(timeout=10).topics if t.startswith(tuple(prefixes))]
    if not old:
        return []
    for fut in admin.delete_topics(old, operation_timeout=timeout).values():
        fut.result()
    deadline = time.monotonic() + timeout
    while set(old) & set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise HeadraceError(
                f"demo: Kafka did not delete the old topics within {timeout:.0f} s: {old}"
            )
        time.sleep(0.5)
    return old
