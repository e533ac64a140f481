"""RankStage across a crash: restore re-sends the full ranking, removed members included."""

from __future__ import annotations

import pickle
from typing import Any

import orjson

from headrace.config import Stage
from streams.stages.base import InMessage
from streams.stages.rank import RankStage


def stage() -> RankStage:
    spec = Stage.model_validate(
        {
            "from": "in",
            "to": "out",
            "rank": {
                "partition_by": ["w"],
                "order_by": ["v desc"],
                "function": "dense_rank",
                "limit": 2,
            },
        }
    )
    return RankStage("top", spec)


def msg(offset: int, member: str, v: int | None) -> InMessage:
    value = None if v is None else orjson.dumps({"w": 0, "m": member, "v": v})
    return InMessage("in", 0, offset, member.encode(), value, 0)


def compacted(messages: list[Any]) -> dict[bytes, int]:
    state: dict[bytes, bytes | None] = {}
    for m in messages:
        state[m.key] = m.value
    return {k: orjson.loads(v)["rank"] for k, v in state.items() if v is not None}


def test_restore_resends_the_ranking_and_tombstones_every_other_known_member() -> None:
    a = stage()
    batches = [
        [msg(0, "a", 5), msg(1, "b", 4), msg(2, "c", 3)],
        [msg(3, "d", 9), msg(4, "a", None)],  # d enters at 1, a is deleted
    ]
    outs = [a.process(0, b) for b in batches]
    assert compacted(outs[0].messages + outs[1].messages) == {b'[0,"d"]': 1, b'[0,"b"]': 2}
    # kill -9: batch 1's state persisted (state goes first), its outputs lost
    state = dict(pickle.loads(pickle.dumps(outs[0].state + outs[1].state)))
    b = stage()
    b.restore(0, state)
    again = b.process(0, batches[1])  # replayed from the committed offset
    sink = compacted(outs[0].messages + again.messages)
    assert sink == {b'[0,"d"]': 1, b'[0,"b"]': 2}  # a's tombstone was re-sent
    tombstones = {m.key for m in again.messages if m.value is None}
    assert tombstones == {b'[0,"a"]', b'[0,"c"]'}
    assert again.counts["reemitted"] == 4
