"""TopN: SQL tie semantics of row_number / rank / dense_rank, limits, upserts and tombstones."""

from __future__ import annotations

from typing import Any

from headrace.config import Rank
from streams.operators.rank import TopN


def topn(
    function: str, limit: int, order: list[str] | None = None, part: list[str] | None = None
) -> TopN:
    return TopN(
        Rank.model_validate(
            {
                "partition_by": part or [],
                "order_by": order or ["v desc"],
                "function": function,
                "limit": limit,
            }
        )
    )


def load(t: TopN, scores: dict[str, Any]) -> None:
    for member, v in scores.items():
        t.update((member,), {"m": member, "v": v})


def ranks(t: TopN, part: tuple[Any, ...] = ()) -> list[tuple[str, int]]:
    return [(m[0], r) for r, m, _ in t.ranked(part)]


SCORES = {"a": 10, "b": 10, "c": 8, "d": 7, "e": 7, "f": 5}


def test_row_number_breaks_ties_by_member_key() -> None:
    t = topn("row_number", 4)
    load(t, SCORES)
    assert ranks(t) == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]


def test_rank_shares_and_skips() -> None:
    t = topn("rank", 4)
    load(t, SCORES)
    assert ranks(t) == [("a", 1), ("b", 1), ("c", 3), ("d", 4), ("e", 4)]


def test_dense_rank_shares_without_gaps_and_may_exceed_limit() -> None:
    t = topn("dense_rank", 3)
    load(t, SCORES)
    assert ranks(t) == [("a", 1), ("b", 1), ("c", 2), ("d", 3), ("e", 3)]


def test_ascending_nulls_first_descending_nulls_last() -> None:
    t = topn("row_number", 3, ["v asc"])
    load(t, {"a": 2, "b": None, "c": 1})
    assert ranks(t) == [("b", 1), ("c", 2), ("a", 3)]
    t = topn("row_number", 3, ["v desc"])
    load(t, {"a": 2, "b": None, "c": 1})
    assert ranks(t) == [("a", 1), ("c", 2), ("b", 3)]


def test_multiple_order_keys_with_mixed_directions() -> None:
    t = TopN(Rank.model_validate({"order_by": ["v desc", "w asc"], "function": "rank", "limit": 9}))
    for m, v, w in [("a", 1, 5), ("b", 2, 9), ("c", 2, 1), ("d", 1, 5)]:
        t.update((m,), {"v": v, "w": w})
    assert ranks(t) == [("c", 1), ("b", 2), ("a", 3), ("d", 3)]


def test_partitions_rank_independently() -> None:
    t = topn("row_number", 1, part=["p"])
    t.update(("a",), {"p": 1, "v": 5})
    t.update(("b",), {"p": 1, "v": 7})
    t.update(("c",), {"p": 2, "v": 1})
    changes = t.flush()
    assert sorted(
        (c.partition, c.member, c.value["rank"] if c.value else None) for c in changes
    ) == [
        ((1,), ("b",), 1),
        ((2,), ("c",), 1),
    ]
    assert changes[0].key == (1, "b")


def test_upserts_then_tombstone_when_a_member_falls_out() -> None:
    t = topn("row_number", 2)
    load(t, {"a": 3, "b": 2, "c": 1})
    first = t.flush()
    assert [(c.member, c.value and c.value["rank"]) for c in first] == [(("a",), 1), (("b",), 2)]
    t.update(("c",), {"m": "c", "v": 9})
    second = t.flush()
    # b falls out (tombstone), c enters at 1, a moves to 2
    assert [(c.member, c.value and c.value["rank"]) for c in second] == [
        (("b",), None),
        (("c",), 1),
        (("a",), 2),
    ]


def test_unchanged_members_are_not_reemitted() -> None:
    t = topn("rank", 3)
    load(t, {"a": 3, "b": 2})
    t.flush()
    t.update(("z",), {"m": "z", "v": 0})
    assert [(c.member, c.value and c.value["rank"]) for c in t.flush()] == [(("z",), 3)]
    assert t.flush() == []


def test_limit_grows_with_ties_and_shrinks_back_with_tombstones() -> None:
    t = topn("dense_rank", 1)
    load(t, {"a": 5})
    t.flush()
    t.update(("b",), {"m": "b", "v": 5})  # tie at rank 1: the top 1 now holds two rows
    assert [(c.member, c.value and c.value["rank"]) for c in t.flush()] == [(("b",), 1)]
    t.update(("b",), {"m": "b", "v": 4})  # no longer tied: b leaves
    assert [(c.member, c.value) for c in t.flush()] == [(("b",), None)]


def test_deleting_a_member_promotes_the_next_and_empties_partitions() -> None:
    t = topn("row_number", 1)
    load(t, {"a": 2, "b": 1})
    t.flush()
    t.update(("a",), None)
    assert [(c.member, c.value and c.value["rank"]) for c in t.flush()] == [
        (("a",), None),
        (("b",), 1),
    ]
    t.update(("b",), None)
    assert [(c.member, c.value) for c in t.flush()] == [(("b",), None)]
    assert t.members == {} and t.emitted == {}


def test_member_moving_partition_is_removed_from_the_old_one() -> None:
    t = topn("row_number", 5, part=["p"])
    t.update(("a",), {"p": 1, "v": 1})
    t.flush()
    t.update(("a",), {"p": 2, "v": 1})
    changes = t.flush()
    assert [(c.partition, c.value is None) for c in changes] == [((1,), True), ((2,), False)]
