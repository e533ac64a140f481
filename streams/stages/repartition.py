"""Re-key a stage's input by fields, so what must be computed together lives in one partition.

Two stages need it (the worker adds it before them; ``headrace check`` says when):

- a **rank** over ``partition_by`` must see every member of a ranking, but its input (e.g. an
  aggregate keyed by group and window) spreads them over all partitions. Each message goes on
  unchanged, keyed by the ``partition_by`` values, with the member (the original key) in the
  ``headrace.member`` header. A tombstone has no fields to route by, so it is sent to every
  partition of the internal topic (each rank partition drops the member if it holds it).
- an **aggregate** must see all records of a group, but its input may be keyed by another
  field (orders keyed by ``order_id``, grouped by ``customer_id``). Each message goes on keyed
  by its ``group_by`` values; tombstones are dropped (an aggregate ignores them anyway).

The ``headrace.source`` header lets a stateful stage drop the duplicates an upstream replay
re-sends: positions from one upstream partition must arrive in order. Through this stage
they arrive in order per (upstream partition, input partition of this stage) only, so the
header names both: ``<upstream topic|partition>><input topic|partition>|offset|index``, the
position being the upstream's (or, for input without the header, this input's offset). A
replay of this stage re-sends the same headers, and is dropped the same way.
"""

from __future__ import annotations

from typing import Literal

from headrace.config import Stage
from schemas import encode_key
from streams.stages.base import (
    HEADER_SOURCE,
    BatchOutput,
    InMessage,
    OutMessage,
    StageDefaults,
    dead_letter,
)

__all__ = ["HEADER_MEMBER", "RepartitionStage"]

HEADER_MEMBER = "headrace.member"


class RepartitionStage(StageDefaults):
    """See the module doc. ``target``: the internal topic, with ``partitions`` partitions;
    ``purpose`` which stage it feeds (``rank``: by ``partition_by``, ``aggregate``: by
    ``group_by``). Dead letters (undecodable input) go to the stage's ``<from>.dlq``."""

    def __init__(
        self,
        name: str,
        stage: Stage,
        *,
        target: str,
        partitions: int,
        purpose: Literal["rank", "aggregate"] = "rank",
    ) -> None:
        self.name = name
        self.source = stage.from_
        self.target = target
        self.partitions = partitions
        self.purpose = purpose
        if purpose == "rank":
            if stage.rank is None:
                raise ValueError(f"stage {name!r} has no rank")
            self.fields = list(stage.rank.partition_by)
        else:
            if stage.aggregate is None:
                raise ValueError(f"stage {name!r} has no aggregate")
            self.fields = list(stage.aggregate.group_by)

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        if self.purpose == "aggregate":
            return self._by_group(partition, batch)
        out = BatchOutput()
        for msg in batch:
            headers = [(HEADER_MEMBER, msg.key or b"")]
            try:
                value = self.decode(msg)
            except ValueError as exc:
                out.dead.append(dead_letter(self.name, msg, exc))
                continue
            if value is None:
                for p in range(self.partitions):
                    out.messages.append(
                        OutMessage(self.target, msg.key, None, msg.timestamp_ms, headers, p)
                    )
                continue
            key = encode_key([value.get(f) for f in self.fields]) if self.fields else b""
            out.messages.append(OutMessage(self.target, key, msg.value, msg.timestamp_ms, headers))
        out.count("dlq", len(out.dead))
        return out

    def _by_group(self, partition: int, batch: list[InMessage]) -> BatchOutput:
        out = BatchOutput()
        via = f">{self.source}|{partition}|".encode()
        own = f"{self.source}|{partition}|".encode()
        fields = self.fields
        for msg in batch:
            try:
                value = self.decode(msg)
            except ValueError as exc:
                out.dead.append(dead_letter(self.name, msg, exc))
                continue
            if value is None:
                out.count("dropped")
                continue
            key = encode_key([value.get(f) for f in fields]) if fields else b""
            upstream = msg.header(HEADER_SOURCE)
            if upstream is None:
                source = b"%b%d|0" % (own, msg.offset)
            else:
                where, offset, index = upstream.rsplit(b"|", 2)
                source = b"%b%b%b|%b" % (where, via, offset, index)
            headers = [(HEADER_SOURCE, source)]
            out.messages.append(OutMessage(self.target, key, msg.value, msg.timestamp_ms, headers))
        out.count("dlq", len(out.dead))
        return out
