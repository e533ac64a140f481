"""The MySQL CDC source's gauges: bytes behind the binlog head, seconds behind, snapshot rows."""

from __future__ import annotations

from prometheus_client import REGISTRY

from producers.mysql_cdc_metrics import CDCMetrics, bytes_behind

LOGS = [("b.000001", 1000), ("b.000002", 500), ("b.000003", 200)]


def test_bytes_behind_counts_the_rest_of_the_file_and_every_later_one() -> None:
    assert bytes_behind(("b.000001", 400), LOGS) == 600 + 500 + 200
    assert bytes_behind(("b.000003", 200), LOGS) == 0
    assert bytes_behind(("b.000003", 250), LOGS) == 0  # the head moved on since it was asked
    assert bytes_behind(("b.000000", 4), LOGS) == 1700  # rotated away: everything is behind


def _value(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_follow_reads_snapshot_and_catching_up() -> None:
    labels = {"pipeline": "p-cdcm", "stage": "orders_cdc", "kind": "source"}
    m = CDCMetrics(("p-cdcm", "orders_cdc", "source"), clock=lambda: 1_000.0)
    asked: list[int] = []

    def ask() -> list[tuple[str, int]]:
        asked.append(1)
        return LOGS

    m.binlog_sizes(ask)
    m.binlog_sizes(ask)  # within 5 s: not asked again
    assert asked == [1]
    m.read(("b.000002", 100), event_seconds=988.5)
    assert _value("headrace_cdc_lag_seconds", labels) == 11.5
    assert _value("headrace_cdc_lag_bytes", labels) == 400 + 200
    m.caught_up()
    assert _value("headrace_cdc_lag_seconds", labels) == 0
    assert _value("headrace_cdc_lag_bytes", labels) == 0

    table = {**labels, "table": "db.orders"}
    m.snapshot_started("db.orders", 12_000)
    m.snapshot_rows("db.orders", 10_000)
    m.snapshot_rows("db.orders", 1_500)
    assert _value("headrace_cdc_snapshot_rows_estimate", table) == 12_000
    assert _value("headrace_cdc_snapshot_rows", table) == 11_500


def test_without_labels_nothing_is_recorded_or_asked() -> None:
    m = CDCMetrics(None)

    def ask() -> list[tuple[str, int]]:
        raise AssertionError("asked")

    m.binlog_sizes(ask)
    m.read(("b.000001", 4), 0.0)
    m.caught_up()
