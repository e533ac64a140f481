"""A ``rank`` stage: top N per partition over a changelog input, upserts and tombstones.

Input messages are the current row of a member (the ``headrace.member`` header set by
``RepartitionStage``, else the message key; e.g. an aggregate's group and window); a
tombstone removes the member. After each batch the touched partitions are re-ranked
(``streams.operators.rank.TopN``) and only the changes go out, keyed by (partition_by values,
member key): an upsert with ``rank``, or a tombstone for a member that left the top N.
The key is ``encode_key`` of the member's row values of the rank's key fields
(``headrace.config.keys``: ``partition_by`` then the input's key fields, e.g.
``[window_start, customer_id]`` over an aggregate by customer), the fields a sink names as its
id, so an upsert and the tombstone of one member address the same document.

State (per input partition, in a changelog-backed table): ``("m", partition, member)`` -> row
(or ``("gone", partition values)`` once a tombstone removed the member), ``("o", partition)``
-> last applied offset.

Crash safety: the runtime persists a batch's state before producing its outputs
(``streams.runner``), so every member ever emitted is in the persisted state, but a kill -9
can persist only part of a batch's state, and lose outputs that were produced after it. So
``restore`` does not trust that what the rows rank as was emitted: with the next batch it
produces the ranking of the restored rows in full (an upsert per top-N member, a tombstone
for every other member it knows, removed ones included). Replayed input then applies on top
(a member's row is an upsert, so applying it twice is harmless). A compacted topic or an
upserting sink ends with exactly the current top N.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from headrace.config import Stage
from headrace.config.keys import MEMBER, KeyFields
from schemas import encode_key
from streams.operators.rank import TopN
from streams.stages.base import (
    BatchOutput,
    InMessage,
    OutMessage,
    StageDefaults,
    dead_letter,
)
from streams.stages.repartition import HEADER_MEMBER

__all__ = ["RankStage"]

GONE = "gone"
"""State value tag of a member removed by a tombstone (kept so ``restore`` re-sends it)."""


class RankStage(StageDefaults):
    """See the module doc."""

    def __init__(self, name: str, stage: Stage, *, key_fields: KeyFields = None) -> None:
        if stage.rank is None:
            raise ValueError(f"stage {name!r} has no rank")
        self.name = name
        self.stage = stage
        self.source = stage.from_
        # the output key's fields (headrace.config.keys): partition_by, then the member's
        # key fields; unknown input key fields: partition_by, then the member key's text
        self.key_fields: tuple[str, ...] = key_fields or (*stage.rank.partition_by, MEMBER)
        self.tops: dict[int, TopN] = {}
        self.offsets: dict[int, int] = {}
        self.reemit: dict[int, list[OutMessage]] = {}  # partition -> full ranking (restore)
        self.order_fields = [ok.field for ok in stage.rank.order_by]

    def _top(self, partition: int) -> TopN:
        top = self.tops.get(partition)
        if top is None:
            assert self.stage.rank is not None
            top = self.tops[partition] = TopN(self.stage.rank)
        return top

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        out = BatchOutput()
        top = self._top(partition)
        last = self.offsets.get(partition, -1)
        again = self.reemit.pop(partition, [])
        out.messages.extend(again)
        out.count("reemitted", len(again))
        for msg in batch:
            if msg.offset <= last:
                out.count("skipped_replayed")
                continue
            last = msg.offset
            raw_member = msg.header(HEADER_MEMBER)
            member = (
                (raw_member if raw_member is not None else msg.key or b"").decode(errors="replace"),
            )
            try:
                value = self.decode(msg)
            except ValueError as exc:
                out.dead.append(dead_letter(self.name, msg, exc, topic=self.stage.from_))
                continue
            if value is not None:
                self._numeric(value)
                out.state.append((("m", partition, member[0]), value))
            else:
                where = top.where.get(member)
                if where is not None:
                    row = top.members[where][member]
                    gone = (GONE, where, self._key(where, member, row))
                    out.state.append((("m", partition, member[0]), gone))
            top.update(member, value)
        self.offsets[partition] = last
        for change in top.flush():
            self._change(out, change.partition, change.member, change.value, change.row)
        out.state.append((("o", partition), last))
        out.count("dlq", len(out.dead))
        return out

    def _key(self, part: tuple[Any, ...], member: tuple[Any, ...], row: dict[str, Any]) -> bytes:
        """The output key of ``member``: its row's values of ``key_fields`` (the member key's
        text for ``MEMBER``), so a sink naming those fields finds the same document for the
        member's upserts and its tombstone."""
        return encode_key([member[0] if f == MEMBER else row.get(f) for f in self.key_fields])

    def _change(
        self,
        out: BatchOutput,
        part: tuple[Any, ...],
        member: tuple[Any, ...],
        value: Any,
        row: dict[str, Any] | None = None,
        key: bytes | None = None,
    ) -> None:
        """One output: ``value`` (an upsert) or None (a tombstone); the key from ``key``, else
        from ``value`` or ``row`` (the member's last row)."""
        if key is None:
            source = value if value is not None else row
            key = (
                self._key(part, member, source)
                if source is not None
                else encode_key([*part, *member])  # a removal stored before 2026-12-07
            )
        data = None if value is None else self.codec.encode(value)
        out.messages.append(OutMessage(self.stage.to, key, data, None))
        out.count("tombstone" if data is None else "out")

    def _numeric(self, value: dict[str, Any]) -> None:
        """JSON carries decimals as text: compare order_by fields holding number text as
        numbers (``"9.5" < "10"``), the way SQL compares the DECIMAL column."""
        for field in self.order_fields:
            v = value.get(field)
            if isinstance(v, str):
                try:
                    value[field] = Decimal(v)
                except InvalidOperation:
                    pass

    def restore(self, partition: int, state: dict[Any, Any]) -> None:
        top = self.tops[partition] = TopN(self.stage.rank)  # type: ignore[arg-type]
        gone: list[tuple[tuple[Any, ...], tuple[Any, ...], bytes | None]] = []
        for key, value in sorted(state.items(), key=lambda kv: repr(kv[0])):
            if key[0] == "m" and isinstance(value, tuple) and value and value[0] == GONE:
                stored_key = value[2] if len(value) > 2 else None
                gone.append((tuple(value[1]), (key[2],), stored_key))
            elif key[0] == "m" and value is not None:
                top.update((key[2],), value)
            elif key[0] == "o":
                self.offsets[partition] = value
        out = BatchOutput()  # the full ranking of the restored rows (see the module doc)
        for part, member, out_key in gone:
            self._change(out, part, member, None, key=out_key)
        top.flush()
        for member, part in top.where.items():
            if member not in top.emitted.get(part, {}):
                self._change(out, part, member, None, top.members[part][member])
        for part, rows in sorted(top.emitted.items(), key=lambda kv: repr(kv[0])):
            for member, row in rows.items():
                self._change(out, part, member, row)
        self.reemit[partition] = out.messages
