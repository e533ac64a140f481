"""A ``rank`` stage: top N per partition over a changelog input, upserts and tombstones.

Input messages are the current row of a member (the ``headrace.member`` header set by
``RepartitionStage``, else the message key; e.g. an aggregate's group and window); a
tombstone removes the member. After each batch the touched partitions are re-ranked
(``streams.operators.rank.TopN``) and only the changes go out, keyed by (partition_by values,
member key): an upsert with ``rank``, or a tombstone for a member that left the top N.

State (per input partition, in a changelog-backed table): ``("m", partition, member)`` -> row,
``("o", partition)`` -> last applied offset. ``restore`` rebuilds the rows and takes the ranking
they give as already emitted (each batch's changes are produced before its state is acked).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from headrace.config import Stage
from schemas import encode_key
from streams.operators.rank import TopN
from streams.stages.base import BatchOutput, InMessage, OutMessage, dead_letter, decode, encode
from streams.stages.repartition import HEADER_MEMBER

__all__ = ["RankStage"]


class RankStage:
    """See the module doc."""

    def __init__(self, name: str, stage: Stage) -> None:
        if stage.rank is None:
            raise ValueError(f"stage {name!r} has no rank")
        self.name = name
        self.stage = stage
        self.source = stage.from_
        self.tops: dict[int, TopN] = {}
        self.offsets: dict[int, int] = {}
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
                value = decode(msg)
            except ValueError as exc:
                out.dead.append(dead_letter(self.name, msg, exc))
                continue
            if value is not None:
                self._numeric(value)
            top.update(member, value)
            out.state.append((("m", partition, member[0]), value))
        self.offsets[partition] = last
        for change in top.flush():
            key = encode_key([*change.partition, *change.member])
            data = None if change.value is None else encode(change.value)
            out.messages.append(OutMessage(self.stage.to, key, data, None))
            out.count("tombstone" if data is None else "out")
        out.state.append((("o", partition), last))
        out.count("dlq", len(out.dead))
        return out

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

    def tick(self, wall_ms: int, caught_up: frozenset[int] = frozenset()) -> BatchOutput:
        return BatchOutput()

    def restore(self, partition: int, state: dict[Any, Any]) -> None:
        top = self.tops[partition] = TopN(self.stage.rank)  # type: ignore[arg-type]
        for key, value in state.items():
            if key[0] == "m" and value is not None:
                top.update((key[2],), value)
            elif key[0] == "o":
                self.offsets[partition] = value
        top.flush()  # what these rows rank as was emitted before the restart

    def state_size(self) -> int:
        return sum(len(t.where) for t in self.tops.values())
