"""Top N per partition with SQL's tie semantics, emitted as upserts and tombstones.

Input is a changelog: ``update(member, value)`` sets a member's current row (``None`` deletes
it), e.g. the output of an aggregate stage keyed by group and window. ``flush()`` ranks every
partition touched since the last flush and returns what changed for a sink:

- an *upsert* for each member in the top N whose rank or row changed (the row plus ``rank``);
- a *tombstone* (``value is None``) for each member that was in the top N and no longer is.

Output is keyed by (partition values, member key), never by rank: under ``rank`` and
``dense_rank`` ties share a rank. A sink that applies the changes holds exactly the current
top N, the rows of ``SELECT *, FN() OVER (PARTITION BY p ORDER BY o) AS rank ... WHERE rank <= N``:

- ``row_number``: 1, 2, 3, ...; peers (equal order values) are ordered by member key, so the
  result is deterministic (SQL leaves that order unspecified);
- ``rank``: peers share the rank of the first, the next rank skips (1, 1, 3);
- ``dense_rank``: peers share a rank, no gaps (1, 1, 2); the top N may hold more than N rows;
- NULLs sort first ascending and last descending (MariaDB/MySQL order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headrace.config import Rank

__all__ = ["RankChange", "TopN", "sort_key"]

Member = tuple[Any, ...]
Partition = tuple[Any, ...]


@dataclass(frozen=True)
class RankChange:
    """One output record: ``value`` None is a tombstone for (partition, member)."""

    partition: Partition
    member: Member
    value: dict[str, Any] | None
    row: dict[str, Any] | None = None
    """For a tombstone, the member's last emitted row (its key fields name the document)."""

    @property
    def key(self) -> tuple[Any, ...]:
        return (*self.partition, *self.member)


def sort_key(value: Any) -> tuple[bool, Any]:
    """Ascending sort key with NULLs first."""
    return (value is not None, value)


class TopN:
    """Rank state of one input partition's members; not thread-safe."""

    def __init__(self, spec: Rank) -> None:
        self.spec = spec
        self.partition_by = tuple(spec.partition_by)
        self.members: dict[Partition, dict[Member, dict[str, Any]]] = {}
        self.where: dict[Member, Partition] = {}
        self.emitted: dict[Partition, dict[Member, dict[str, Any]]] = {}
        self._dirty: set[Partition] = set()

    def update(self, member: Member, value: dict[str, Any] | None) -> None:
        """Set (or with None, remove) ``member``'s current row; ranked at the next flush."""
        old = self.where.pop(member, None)
        if old is not None:
            rows = self.members[old]
            del rows[member]
            if not rows:
                del self.members[old]
            self._dirty.add(old)
        if value is None:
            return
        part = tuple(value.get(f) for f in self.partition_by)
        self.members.setdefault(part, {})[member] = value
        self.where[member] = part
        self._dirty.add(part)

    def ranked(self, part: Partition) -> list[tuple[int, Member, dict[str, Any]]]:
        """(rank, member, row) of the partition's top N, best first."""
        rows = self.members.get(part, {})
        order = sorted(rows, key=repr)  # peers by member key, for row_number
        for ok in reversed(self.spec.order_by):
            name = ok.field

            def by_field(m: Member, name: str = name) -> tuple[bool, Any]:
                return sort_key(rows[m].get(name))

            order.sort(key=by_field, reverse=ok.descending)
        fields = [ok.field for ok in self.spec.order_by]
        fn, limit = self.spec.function, self.spec.limit
        out: list[tuple[int, Member, dict[str, Any]]] = []
        rank = 0
        previous: tuple[Any, ...] | None = None
        for i, member in enumerate(order):
            values = tuple(rows[member].get(f) for f in fields)
            if fn == "row_number":
                rank = i + 1
            elif values != previous:
                rank = i + 1 if fn == "rank" else rank + 1
            previous = values
            if rank > limit:
                break
            out.append((rank, member, rows[member]))
        return out

    def flush(self) -> list[RankChange]:
        """Re-rank the partitions touched since the last flush; return the changes
        (tombstones first, then upserts best first)."""
        changes: list[RankChange] = []
        for part in sorted(self._dirty, key=repr):
            before = self.emitted.get(part, {})
            now = {m: {**row, "rank": r} for r, m, row in self.ranked(part)}
            for member in before:
                if member not in now:
                    changes.append(RankChange(part, member, None, before[member]))
            for member, row in now.items():
                if before.get(member) != row:
                    changes.append(RankChange(part, member, row))
            if now:
                self.emitted[part] = now
            else:
                self.emitted.pop(part, None)
        self._dirty.clear()
        return changes
