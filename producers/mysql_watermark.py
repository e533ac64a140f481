"""The MySQL source's position, with Kafka Connect JDBC semantics, as pure logic.

Modes and the rows one poll reads (``until`` = database time minus ``timestamp_delay``):

- ``bulk``: every row, every poll (no position).
- ``incrementing``: ``id > last_id`` ordered by id. A row whose id was allocated before but
  committed after a larger one is missed (as in Kafka Connect): use a timestamp mode for that.
- ``timestamp``: ``last_ts < ts < until`` ordered by ts. Rows sharing a timestamp are kept
  together: the stored position is the last timestamp *all* of whose rows were sent, so a
  restart inside a tie re-sends that tie group, never skips part of it.
- ``timestamp+incrementing``: ``ts < until and (ts > last_ts or (ts = last_ts and id > last_id))``
  ordered by (ts, id): exact, ties broken by id.

``until`` is what makes late commits safe: a row committed with an older timestamp than rows
already read is still found as long as it commits within ``timestamp_delay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Watermark", "WatermarkTracker", "where_clause"]


@dataclass(frozen=True, slots=True)
class Watermark:
    """A resume position: rows after (ts, id) in the mode's order are still to be read."""

    ts: datetime | None = None
    id: Any = None

    def to_state(self, mode: str) -> dict[str, Any]:
        """JSON-able checkpoint state (ts as ISO-8601 text)."""
        return {
            "mode": mode,
            "ts": None if self.ts is None else self.ts.isoformat(),
            "id": self.id,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, mode: str) -> Watermark:
        """The watermark in a checkpoint state; a state of another mode starts over."""
        if not state or state.get("mode") != mode:
            return cls()
        ts = state.get("ts")
        return cls(datetime.fromisoformat(ts) if ts else None, state.get("id"))


def where_clause(mode: str, ts_col: str, id_col: str, wm: Watermark) -> tuple[str, str, set[str]]:
    """(WHERE condition, ORDER BY, parameter names) for quoted column names; parameters are
    ``hr_ts``, ``hr_id`` (the watermark) and ``hr_until`` (bound by the caller)."""
    if mode == "bulk":
        return "", "", set()
    if mode == "incrementing":
        if wm.id is None:
            return "", f"{id_col} ASC", set()
        return f"{id_col} > :hr_id", f"{id_col} ASC", {"hr_id"}
    if mode == "timestamp":
        if wm.ts is None:
            return f"{ts_col} < :hr_until", f"{ts_col} ASC", {"hr_until"}
        return (
            f"{ts_col} > :hr_ts AND {ts_col} < :hr_until",
            f"{ts_col} ASC",
            {"hr_ts", "hr_until"},
        )
    if mode == "timestamp+incrementing":
        order = f"{ts_col} ASC, {id_col} ASC"
        if wm.ts is None:
            return f"{ts_col} < :hr_until", order, {"hr_until"}
        return (
            f"{ts_col} < :hr_until AND ({ts_col} > :hr_ts OR "
            f"({ts_col} = :hr_ts AND {id_col} > :hr_id))",
            order,
            {"hr_ts", "hr_id", "hr_until"},
        )
    raise ValueError(f"unknown mode {mode!r}")


class WatermarkTracker:
    """Follows the rows of one poll (in query order) and says where a restart may resume.

    ``see(ts, id)`` for each row sent; ``safe()`` is the position after the rows seen so far
    that never skips a row (timestamp mode holds back the open tie group); ``finish()`` marks
    the poll's result set as exhausted (the tie group is then complete).
    """

    def __init__(self, mode: str, start: Watermark) -> None:
        self.mode = mode
        self._safe = start
        self._group_ts: datetime | None = None
        self._last = start

    def see(self, ts: datetime | None, row_id: Any) -> None:
        if self.mode == "timestamp":
            if self._group_ts is not None and ts is not None and ts > self._group_ts:
                self._safe = Watermark(self._group_ts, None)
            self._group_ts = ts
        elif self.mode in ("incrementing", "timestamp+incrementing"):
            self._last = Watermark(ts, row_id)
            self._safe = self._last

    def see_batch(self, ts_values: Sequence[Any], ids: Sequence[Any]) -> None:
        """The same as ``see`` for every row of a batch in order (``ts_values`` and ``ids``
        are the batch's columns, or empty when the mode has no such column), in O(ties)."""
        n = max(len(ts_values), len(ids))
        if n == 0:
            return
        last_ts = ts_values[-1] if ts_values else None
        if self.mode == "timestamp":
            i = n - 1
            while i >= 0 and ts_values[i] == last_ts:
                i -= 1
            if i >= 0:
                self.see(ts_values[i], None)  # the last complete tie group of the batch
        self.see(last_ts, ids[-1] if ids else None)

    def finish(self) -> None:
        if self.mode == "timestamp" and self._group_ts is not None:
            self._safe = Watermark(self._group_ts, None)

    def safe(self) -> Watermark:
        return self._safe
