"""The simulated worker: rate limits on the simulated clock, the idle timer, repartitioning
over several partitions, lookups, all through ``headrace test``."""

from __future__ import annotations

import pytest

from headrace.config import Stage
from headrace_cli.pipeline_test.window_timer import next_due
from streams.stages.aggregate import AggregateStage
from streams.stages.base import InMessage

LIMITED = """\
topics: [orders]
stages:
  slow:
    from: orders
    to: orders.slow
    rate_limit: {rate: 2, per: 1s, burst: 2}
  capped:
    from: orders
    to: orders.capped
    rate_limit: {rate: 2, per: 1s, burst: 2, on_excess: shed}
"""

FIVE_ORDERS = ", ".join(f"{{value: {{id: {i}}}}}" for i in range(1, 6))


def test_a_delaying_rate_limit_sends_in_bursts_on_the_simulated_clock(write, run) -> None:
    path = write(
        LIMITED,
        f"""\
        tests:
          - name: five orders at once through 2 a second
            stages: [slow]
            input:
              orders: [{FIVE_ORDERS}]
            expect:
              orders.slow:
                count: 5
              rate_limit:
                slow:
                  sent: 5
                  delayed: 3
                  shed: 0
                  timeline:
                    - {{at: 0s, sent: 2}}
                    - {{at: 1s, sent: 2}}
                    - {{at: 1.5s, sent: 1}}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_output_records_carry_the_simulated_time_they_left(write, run) -> None:
    path = write(
        LIMITED,
        f"""\
        tests:
          - name: the fifth order leaves at 1.5 s
            stages: [slow]
            input:
              orders: [{FIVE_ORDERS}]
            expect:
              orders.slow:
                - {{value: {{id: 1}}, at: 0s}}
                - {{value: {{id: 2}}, at: 0s}}
                - {{value: {{id: 3}}, at: 1s}}
                - {{value: {{id: 4}}, at: 1s}}
                - {{value: {{id: 5}}, at: 1s}}
        """,
    )
    code, out, _err = run("test", path)
    assert code == 1
    assert "~ #5 differs:" in out
    assert "at: expected 1s, got 1.5s" in out


def test_a_shedding_rate_limit_sends_the_excess_to_the_overflow_topic(write, run) -> None:
    path = write(
        LIMITED,
        f"""\
        tests:
          - name: five orders at once, two pass
            stages: [capped]
            input:
              # the sixth a second later: the bucket holds two tokens again
              orders: [{FIVE_ORDERS}, {{value: {{id: 6}}, at: 1s}}]
            expect:
              orders.capped: [{{value: {{id: 1}}}}, {{value: {{id: 2}}}}, {{value: {{id: 6}}}}]
              orders.overflow:
                count: 3
              rate_limit:
                capped:
                  timeline:
                    - {{at: 0s, sent: 2, shed: 3}}
                    - {{at: 1s, sent: 1}}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def test_a_wrong_rate_limit_expectation_says_what_happened(write, run) -> None:
    path = write(
        LIMITED,
        f"""\
        tests:
          - name: expects no delay
            stages: [slow]
            input:
              orders: [{FIVE_ORDERS}]
            expect:
              rate_limit:
                slow: {{delayed: 0, timeline: [{{at: 0s, sent: 5}}]}}
        """,
    )
    code, out, _err = run("test", path)
    assert code == 1
    assert "delayed: 0 expected, 3 happened" in out
    assert "actual   {at: 1.5s, sent: 1}" in out


WINDOWS = """\
topics: [orders]
stages:
  totals:
    from: orders
    to: totals
    aggregate:
      group_by: [customer_id]
      window: {type: tumbling, size: 1m, grace: 10s}
      measures: {n: count()}
"""


@pytest.mark.parametrize(("advance", "closed"), [("79s", 0), ("80s", 1)])
def test_the_idle_timer_closes_a_window_once_its_end_plus_grace_has_passed(
    write, run, advance: str, closed: int
) -> None:
    # a record at 00:00:30: the window ends at 01:00, +10 s grace: 70 s of event time later,
    # but the timer waits for the worker's --idle-ms (idle: 80s here)
    path = write(
        WINDOWS,
        f"""\
        idle: 80s
        tests:
          - name: quiet for {advance}
            stages: [totals]
            input:
              orders:
                - {{value: {{customer_id: c1}}, time: "2024-05-01T00:00:30Z"}}
            advance: {advance}
            expect:
              totals:
                count: {closed}
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


def _message(offset: int, ts: int) -> InMessage:
    return InMessage("orders", 0, offset, b"c1", b'{"customer_id": "c1"}', ts)


def test_next_due_is_the_first_wall_time_tick_closes_a_window() -> None:
    """``window_timer`` reads the stage's state: pinned against ``tick`` itself."""
    stage = Stage.model_validate(
        {
            "from": "orders",
            "to": "totals",
            "aggregate": {
                "group_by": ["customer_id"],
                "window": {"type": "tumbling", "size": "1m", "grace": "10s"},
                "measures": {"n": "count()"},
            },
        }
    )

    class Log:
        def partition(self, key: bytes) -> int:
            return 0

        def start(self, partition: int) -> int:
            return 0

        def present(self, partition: int, start: int) -> set[tuple[bytes | None, bytes | None]]:
            return set()

    for idle_ms, first_ts in [(5000, 30_000), (100_000, 30_000), (5000, 59_999)]:
        agg = AggregateStage("totals", stage, output=Log(), idle_ms=idle_ms)
        agg.process(0, [_message(0, first_ts)], 1_000)
        due = next_due(agg, frozenset({0}))
        assert due is not None
        assert not agg.tick(due - 1, frozenset({0})).messages
        assert len(agg.tick(due, frozenset({0})).messages) == 1
        assert next_due(agg, frozenset({0})) is None
    assert next_due(agg, frozenset()) is None


BY_ORDER = """\
topics: [orders]
stages:
  keyed:
    from: orders
    to: orders.keyed
    key: [order_id]
    transform: [{set: {n: "1"}}]
  per_customer:
    from: orders.keyed
    to: per_customer
    aggregate:
      group_by: [customer_id]
      window: {type: tumbling, size: 1m}
      measures: {orders: count()}
"""


def test_an_aggregate_over_another_key_is_repartitioned_first(write, run) -> None:
    """Orders keyed by order id on 4 partitions: one row per customer (issue 15, defect 1),
    through the internal topic the worker adds."""
    orders = ", ".join(
        f'{{value: {{order_id: {i}, customer_id: c{i % 2}}}, time: "2024-05-01T00:00:0{i}Z"}}'
        for i in range(1, 7)
    )
    path = write(
        BY_ORDER,
        f"""\
        partitions: 4
        tests:
          - name: three orders each for two customers
            stages: [keyed, per_customer]
            input:
              orders: [{orders}]
            advance: 2m
            expect:
              per_customer:
                records:
                  - {{key: [c0, 1714521600000], value: {{customer_id: c0, orders: 3}}}}
                  - {{key: [c1, 1714521600000], value: {{customer_id: c1, orders: 3}}}}
                ordered: false
                subset: true
              headrace-t-per_customer-by-group:
                count: 6
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err


LOOKUP = """\
topics: [orders, customers]
stages:
  enrich:
    from: orders
    to: orders.enriched
    lookup: {table_from: customers, on: [customer_id], fields: [name], missing: dlq}
"""


def test_a_lookup_sees_the_customers_that_arrived_before_the_order(write, run) -> None:
    path = write(
        LOOKUP,
        """\
        tests:
          - name: one customer known, one arriving a second after its order
            stages: [enrich]
            input:
              customers:
                - {key: c1, value: {customer_id: c1, name: Ada}}
                - {key: c2, value: {customer_id: c2, name: Alan}, at: 1s}
              orders:
                - {key: c1, value: {id: 1, customer_id: c1}}
                - {key: c2, value: {id: 2, customer_id: c2}}
            expect:
              orders.enriched: [{key: c1, value: {id: 1, customer_id: c1, name: Ada}}]
              dead_letters:
                - topic: orders
                  stage: enrich
                  reason: "no value in 'customers' for customer_id='c2'"
        """,
    )
    code, out, err = run("test", path)
    assert code == 0, out + err
