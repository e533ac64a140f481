"""Positions of the MySQL CDC source, and the seam between its snapshot and the binlog, as pure
logic (no database).

A binlog position is ``(file, pos)``: the next event to read. Files of one server sort by name
(``mariadb-bin.000007`` < ``mariadb-bin.000010``), so positions compare as tuples.

The snapshot reads each table in primary-key order, in chunks. A crash mid-snapshot resumes
with a *new* consistent-snapshot transaction at a later binlog position, after the last key
read; so the rows of one table are read in *segments*, each ``(after_key, pos)``: rows whose
key is greater than ``after_key`` (up to the next segment's) were read as of ``pos``. The
stream then starts at the smallest segment position, and a row event at end position ``e`` on
a row with key ``k`` is already reflected in the snapshot when ``e <= pos`` of the segment
holding ``k``: it is skipped. So nothing is lost (every change after a row was read is
streamed) and nothing is doubled (no change read by the snapshot is streamed again), also
across any number of resumed snapshots. Once the stream passes the largest segment position
the filter is a no-op.

Checkpoint state (JSON)::

    {"v": 1, "phase": "snapshot" | "stream",
     "binlog": [file, pos],            # stream: resume here (a transaction boundary)
     "gtid": "0-1-42" | null,          # the last transaction's GTID (information)
     "snapshot": {"table": {"segments": [[after_key | null, [file, pos]], ...],
                            "last_key": [..] | null, "done": bool}}}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Position", "Seam", "TableProgress", "position_of"]

Position = tuple[str, int]


def position_of(value: Any) -> Position:
    """A position from its JSON form ``[file, pos]``; ValueError when it is not one."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{value!r} is not a binlog position [file, pos]")
    return (str(value[0]), int(value[1]))


def _key_order(key: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(key)


@dataclass
class TableProgress:
    """The snapshot of one table: its segments (``(after_key, pos)`` in key order; the first
    has ``after_key`` None), the last key read (None: none yet) and whether it is done."""

    segments: list[tuple[tuple[Any, ...] | None, Position]] = field(default_factory=list)
    last_key: tuple[Any, ...] | None = None
    done: bool = False

    def begin_segment(self, pos: Position) -> None:
        """A (new) snapshot transaction at ``pos`` reads the rows after ``last_key``."""
        if self.segments and self.segments[-1][0] == self.last_key:
            self.segments[-1] = (self.last_key, pos)  # nothing read in the previous one
        else:
            self.segments.append((self.last_key, pos))

    def position_of_key(self, key: Sequence[Any]) -> Position | None:
        """The position as of which the row with ``key`` was read (None: not read, e.g. a
        row inserted after its chunk was read, or a table whose snapshot is skipped)."""
        if not self.segments:
            return None
        k = _key_order(key)
        if not self.done and (self.last_key is None or k > self.last_key):
            return None
        # segment i+1 holds the keys greater than its after_key (and up to the next one's)
        i = sum(1 for after, _pos in self.segments[1:] if after is not None and k > after)
        return self.segments[i][1]

    def to_state(self) -> dict[str, Any]:
        return {
            "segments": [[None if a is None else list(a), list(p)] for a, p in self.segments],
            "last_key": None if self.last_key is None else list(self.last_key),
            "done": self.done,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TableProgress:
        segments = [
            (None if a is None else tuple(a), position_of(p)) for a, p in state.get("segments", [])
        ]
        last = state.get("last_key")
        return cls(segments, None if last is None else tuple(last), bool(state.get("done")))


class Seam:
    """Decides, per row event, whether the snapshot already holds it (see the module
    docstring). ``tables``: the snapshot progress of every snapshotted table."""

    def __init__(self, tables: dict[str, TableProgress]) -> None:
        self.tables = tables
        ends = [p for t in tables.values() for _k, p in t.segments]
        self.horizon: Position | None = max(ends) if ends else None

    def start(self, default: Position) -> Position:
        """Where the stream starts: the smallest segment position (``default`` if none)."""
        starts = [p for t in self.tables.values() for _k, p in t.segments]
        return min(starts) if starts else default

    def reflected(self, table: str, key: Sequence[Any], end: Position) -> bool:
        """True when the change ending at ``end`` on row ``key`` of ``table`` is already in
        the snapshot (skip it)."""
        if self.horizon is None or end > self.horizon:
            return False
        progress = self.tables.get(table)
        if progress is None:
            return False
        read_as_of = progress.position_of_key(key)
        return read_as_of is not None and end <= read_as_of
