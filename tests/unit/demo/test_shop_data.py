"""The shop dataset and the oracle's own customer parser: deterministic, laid out on windows,
malformed lines counted the same way the oracle counts them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson

from headrace_dev.demo.shop_data import PREFIX, WINDOW_MS, generate
from headrace_dev.demo.shop_verify import _valid_review, expected_customers, expected_reviews

REPO = Path(__file__).resolve().parents[3]

NOW = 1_790_000_123_456


def test_same_seed_same_data_and_another_seed_differs() -> None:
    a, b = generate(500, 40, seed=3, now_ms=NOW), generate(500, 40, seed=3, now_ms=NOW)
    assert a.orders == b.orders and a.updates == b.updates and a.objects == b.objects
    assert generate(500, 40, seed=4, now_ms=NOW).orders != a.orders


def test_orders_fill_whole_windows_in_the_past_in_id_order() -> None:
    data = generate(2000, 50, seed=1, now_ms=NOW)
    start, end = data.span
    assert start % WINDOW_MS == 0 and end % WINDOW_MS == 0
    assert end <= NOW - 30 * 60_000
    times = [o.created_ms for o in data.orders]
    assert times == sorted(times) and start <= times[0] and times[-1] < end
    # every later update is after its order and before now
    created = {o.id: o.created_ms for o in data.orders}
    assert all(created[oid] < ms < NOW for oid, _, _, ms in data.updates)
    assert {s for _, s, _, _ in data.updates} <= {"shipped", "delivered", "cancelled"}


def test_objects_are_jsonl_and_csv_with_malformed_lines_the_oracle_counts() -> None:
    data = generate(100, 300, seed=7, now_ms=NOW)
    kinds = {k.rsplit(".", 1)[1] for k in data.objects}
    assert kinds == {"jsonl", "csv"} and all(k.startswith(PREFIX) for k in data.objects)
    customers, malformed = expected_customers(data.objects)
    assert malformed == data.malformed_lines >= 1
    # every customer is either known or lost to exactly one malformed line
    assert len(customers) + data.malformed_lines - 1 == data.customers  # one non-customer line
    assert all(c["tier"] in {"bronze", "silver", "gold", "platinum"} for c in customers.values())
    # quoted CSV names holding the delimiter survive
    assert any("," in c["name"] for c in customers.values())


def test_oracle_parser_rules() -> None:
    objects = {
        "customers/a.jsonl": b'{"customer_id": "c1", "name": "A", "tier": "gold"}\n'
        b"\n"
        b'{"customer_id": 5}\n'
        b"[1, 2]\n"
        b'{"customer_id": "c2", "name": "B", "tier": "bronze"}\n',
        "customers/b.csv": b'customer_id,name,tier,city\nc3,"C, D",silver,Lima\nc4,E,gold\n'
        b"c2,B2,platinum,Lyon\n",
    }
    customers, malformed = expected_customers(objects)
    assert malformed == 3  # a non-string id, a non-object, a short CSV row
    assert customers["c3"] == {"name": "C, D", "tier": "silver"}
    assert customers["c2"]["tier"] == "platinum"  # a later object (key order) wins
    assert set(customers) == {"c1", "c2", "c3"}


def test_reviews_are_deterministic_and_hold_edits_and_invalid_ones() -> None:
    a, b = generate(4000, 60, seed=5, now_ms=NOW), generate(4000, 60, seed=5, now_ms=NOW)
    assert a.reviews == b.reviews and a.reviews
    ids = [r.get("order_id") for r in a.reviews]
    assert len(ids) > len(set(ids))  # some orders reviewed twice: the later one wins
    _, invalid = expected_reviews(b"\n".join(orjson.dumps(r) for r in a.reviews))
    assert 0 < invalid < len(a.reviews) // 10


def test_the_oracles_review_rules_agree_with_the_gateways_schema() -> None:
    """``shop_verify`` checks reviews in plain Python; the gateway with
    ``examples/shop/review.schema.json``. Both must say the same of every generated review
    and of the edge cases a web shop could send."""
    schema = json.loads((REPO / "examples" / "shop" / "review.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    base = {
        "order_id": 7,
        "customer_id": "c00001",
        "rating": 3,
        "reviewed_at": "2026-01-01T10:00:00Z",
    }
    cases: list[object] = [
        *generate(3000, 40, seed=9, now_ms=NOW).reviews,
        base,
        {**base, "comment": "fine"},
        {**base, "rating": True},
        {**base, "rating": 5.0},
        {**base, "rating": "5"},
        {**base, "order_id": 0},
        {**base, "extra": 1},
        {**base, "comment": "x" * 2001},
        {**base, "customer_id": "c" * 17},
        {**base, "rating": 4.5},
        {**base, "reviewed_at": ""},
        {k: v for k, v in base.items() if k != "reviewed_at"},
        [base],
    ]
    for case in cases:
        assert _valid_review(case) == validator.is_valid(case), case


def test_expected_reviews_keeps_the_last_valid_review_of_each_order() -> None:
    at = "2026-01-01T10:00:00+00:00"
    lines = [
        {"order_id": 1, "customer_id": "c1", "rating": 2, "comment": "late", "reviewed_at": at},
        {"order_id": 1, "customer_id": "c1", "rating": 9, "reviewed_at": at},  # invalid
        {"order_id": 2, "customer_id": "c2", "rating": 5, "reviewed_at": at},
        {"order_id": 1, "customer_id": "c1", "rating": 4, "comment": "edited", "reviewed_at": at},
    ]
    last, invalid = expected_reviews(b"\n".join(orjson.dumps(r) for r in lines) + b"\n\n")
    assert last == {1: (4, "edited"), 2: (5, None)} and invalid == 1
