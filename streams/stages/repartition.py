"""Re-key a rank stage's input by ``partition_by``, so one ranking lives in one partition.

A rank over ``partition_by: [window_start]`` must see every member of a window, but its input
(e.g. an aggregate keyed by group and window) spreads them over all partitions. This
processor forwards each message unchanged to an internal topic, keyed by the ``partition_by``
values, with the member (the original key) in the ``headrace.member`` header. A tombstone has
no fields to route by, so it is sent to every partition of the internal topic (each rank
partition drops the member if it holds it).
"""

from __future__ import annotations

from headrace.config import Stage
from schemas import encode_key
from streams.stages.base import (
    BatchOutput,
    InMessage,
    OutMessage,
    StageDefaults,
    dead_letter,
    decode,
)

__all__ = ["HEADER_MEMBER", "RepartitionStage"]

HEADER_MEMBER = "headrace.member"


class RepartitionStage(StageDefaults):
    """See the module doc. ``target``: the internal topic, with ``partitions`` partitions."""

    def __init__(self, name: str, stage: Stage, *, target: str, partitions: int) -> None:
        if stage.rank is None:
            raise ValueError(f"stage {name!r} has no rank")
        self.name = name
        self.source = stage.from_
        self.target = target
        self.partitions = partitions
        self.fields = list(stage.rank.partition_by)

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        out = BatchOutput()
        for msg in batch:
            headers = [(HEADER_MEMBER, msg.key or b"")]
            try:
                value = decode(msg)
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
