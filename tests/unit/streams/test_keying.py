"""Issue #15, defects 1 and 2, at the stage level: an aggregate over input keyed by another
field than its group (repartitioned by group first), and a rank whose changes are keyed by the
member's fields (so a sink naming them deletes what it upserted)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from fixtures.values import present
from test_aggregate_stage import FakeOutputLog

from headrace.config import Stage
from schemas import encode_key
from streams.output_log import partition_for
from streams.stages.aggregate import AggregateStage
from streams.stages.base import HEADER_SOURCE, InMessage, OutMessage
from streams.stages.rank import RankStage
from streams.stages.repartition import RepartitionStage

MINUTE = 60_000
AGG = Stage.model_validate(
    {
        "from": "orders",
        "to": "revenue",
        "aggregate": {
            "group_by": ["customer_id"],
            "window": {"type": "tumbling", "size": "1m"},
            "measures": {"revenue": "sum(amount)", "orders": "count()"},
        },
    }
)
PARTITIONS = 2


def order(partition: int, offset: int, order_id: int, customer: int, amount: str, ts: int):
    value = {"order_id": order_id, "customer_id": customer, "amount": amount}
    return InMessage("orders", partition, offset, encode_key([order_id]), orjson.dumps(value), ts)


def deliver(messages: list[OutMessage], partitions: int) -> dict[int, list[InMessage]]:
    """What a producer would write: each message on its partition, in order."""
    logs: dict[int, list[InMessage]] = {p: [] for p in range(partitions)}
    for m in messages:
        assert m.key is not None
        p = m.partition if m.partition is not None else partition_for(m.key, partitions)
        logs[p].append(
            InMessage(
                m.topic, p, len(logs[p]), m.key, m.value, m.timestamp_ms or 0, tuple(m.headers)
            )
        )
    return logs


def run_aggregate(inputs: dict[int, list[InMessage]], close_at: int) -> list[dict[str, Any]]:
    """Every row the aggregate emits (a sink keyed by the row key keeps only the last)."""
    agg = AggregateStage("revenue", AGG, output=FakeOutputLog(PARTITIONS))
    out: list[OutMessage] = []
    for p, batch in inputs.items():
        out += agg.process(p, batch).messages
    for p in inputs:  # a late record to every partition moves its watermark past the window
        closer = order(p, 10_000, 0, 10_000 + p, "0", close_at)
        out += agg.process(p, [closer]).messages
    return [orjson.loads(m.value) for m in out if m.value is not None]


def test_unrepartitioned_input_splits_a_group_in_two_rows():
    """The bug as it was: the aggregate alone, on input keyed by order_id."""
    inputs = {0: [order(0, 0, 1, 7, "10.00", 1000)], 1: [order(1, 0, 2, 7, "20.00", 2000)]}
    got = run_aggregate(inputs, close_at=10 * MINUTE)
    assert sorted((r for r in got if r["customer_id"] == 7), key=lambda r: r["revenue"]) == [
        {
            "customer_id": 7,
            "window_start": 0,
            "window_end": MINUTE,
            "revenue": "10.00",
            "orders": 1,
        },
        {
            "customer_id": 7,
            "window_start": 0,
            "window_end": MINUTE,
            "revenue": "20.00",
            "orders": 1,
        },
    ]


def test_repartitioned_input_gives_one_row_per_group():
    """Defect 1: customer 7's 10.00 on partition 0 and 20.00 on partition 1 in the same
    minute make one row 30.00/2."""
    repartition = RepartitionStage(
        "revenue", AGG, target="internal", partitions=PARTITIONS, purpose="aggregate"
    )
    orders = {0: [order(0, 0, 1, 7, "10.00", 1000)], 1: [order(1, 0, 2, 7, "20.00", 2000)]}
    forwarded: list[OutMessage] = []
    for p, batch in orders.items():
        forwarded += repartition.process(p, batch).messages
    assert {m.key for m in forwarded} == {b"7"}
    internal = deliver(forwarded, PARTITIONS)
    got = run_aggregate(internal, close_at=10 * MINUTE)
    seven = [r for r in got if r["customer_id"] == 7]
    assert len(seven) == 1
    assert Decimal(seven[0]["revenue"]) == Decimal("30.00") and seven[0]["orders"] == 2


def test_repartition_replays_and_interleaving_are_exact():
    """Upstream positions arrive in order only per (upstream partition, repartition input
    partition): a record from a later upstream offset arriving first through another
    partition is not a duplicate, and a replayed repartition batch is dropped."""
    repartition = RepartitionStage(
        "revenue", AGG, target="internal", partitions=PARTITIONS, purpose="aggregate"
    )

    def from_records_stage(p: int, offset: int, upstream_offset: int, amount: str):
        m = order(p, offset, offset, 7, amount, 1000)
        m.headers = ((HEADER_SOURCE, b"orders.raw|0|%d|0" % upstream_offset),)
        return m

    first = repartition.process(1, [from_records_stage(1, 0, 2, "2")]).messages
    second = repartition.process(0, [from_records_stage(0, 0, 1, "1")]).messages
    replay = repartition.process(1, [from_records_stage(1, 0, 2, "2")]).messages
    internal = deliver(first + second + replay, PARTITIONS)
    got = run_aggregate(internal, close_at=10 * MINUTE)
    (seven,) = [r for r in got if r["customer_id"] == 7]
    assert (Decimal(seven["revenue"]), seven["orders"]) == (Decimal(3), 2)


RANK = Stage.model_validate(
    {
        "from": "revenue",
        "to": "top",
        "rank": {"partition_by": ["window_start"], "order_by": ["revenue desc"], "limit": 1},
    }
)


def test_rank_changes_are_keyed_by_the_members_fields():
    """Defect 2: a top-1 that moves from customer 7 to customer 8 sends the tombstone of 7
    under the key its upsert had: [window_start, customer_id], the fields a sink names."""
    rank = RankStage("top", RANK, key_fields=("window_start", "customer_id"))

    def member(offset: int, customer: int, revenue: str) -> InMessage:
        value = {
            "customer_id": customer,
            "window_start": 0,
            "window_end": MINUTE,
            "revenue": revenue,
        }
        return InMessage(
            "internal", 0, offset, encode_key([customer, 0]), orjson.dumps(value), MINUTE - 1
        )

    first = rank.process(0, [member(0, 7, "30.00")]).messages
    assert [(m.key, orjson.loads(present(m.value))["rank"]) for m in first] == [(b"[0,7]", 1)]
    second = rank.process(0, [member(1, 8, "40.00")]).messages
    assert [(m.key, m.value is None) for m in second] == [(b"[0,7]", True), (b"[0,8]", False)]


def test_rank_over_an_unknown_key_keeps_the_member_text():
    rank = RankStage("top", RANK)
    value = {"window_start": 0, "revenue": "1"}
    out = rank.process(0, [InMessage("i", 0, 0, b"m1", orjson.dumps(value), 0)]).messages
    assert [m.key for m in out] == [b'[0,"m1"]']
