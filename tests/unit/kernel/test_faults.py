"""Faults a process recovers from (headrace.faults): metrics, broker errors, the probe."""

from __future__ import annotations

from prometheus_client import REGISTRY

from headrace.faults import FaultTracker


class _Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Err:
    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_recovery_is_counted_timed_and_stamped() -> None:
    clock, wall = _Clock(), _Clock(1_700_000_000.0)
    tracker = FaultTracker("p", "sink/t1", clock=clock, wall=wall)
    labels = {"pipeline": "p", "process": "sink/t1", "fault": "database_unavailable"}
    tracker.begin("database_unavailable")
    clock.now += 30
    tracker.begin("database_unavailable")  # still the same fault
    clock.now += 15
    assert tracker.end("database_unavailable") == 45
    assert tracker.end("database_unavailable") is None  # nothing open: nothing recorded
    assert _value("headrace_fault_recoveries_total", **labels) == 1
    assert _value("headrace_fault_recovery_seconds_sum", **labels) == 45
    assert _value("headrace_fault_recovery_seconds_bucket", le="60.0", **labels) == 1
    assert _value("headrace_fault_recovery_seconds_bucket", le="30.0", **labels) == 0
    assert _value("headrace_last_fault_timestamp_seconds", **labels) == 1_700_000_000.0
    assert _value("headrace_last_fault_recovery_seconds", **labels) == 45


def test_broker_errors_flip_reachability_until_a_probe_succeeds() -> None:
    answers = [False, True]
    clock = _Clock()
    tracker = FaultTracker("p", "source/t2", probe=lambda: answers.pop(0), clock=clock)
    reach = {"pipeline": "p", "process": "source/t2"}
    assert _value("headrace_broker_reachable", **reach) == 1
    tracker.kafka_error(_Err("_ALL_BROKERS_DOWN"))
    assert _value("headrace_broker_reachable", **reach) == 0
    clock.now += 20
    tracker.probe_once()  # still down
    assert _value("headrace_broker_reachable", **reach) == 0
    clock.now += 20
    tracker.probe_once()
    assert _value("headrace_broker_reachable", **reach) == 1
    labels = {**reach, "fault": "broker_unreachable"}
    assert _value("headrace_fault_recoveries_total", **labels) == 1
    assert _value("headrace_last_fault_recovery_seconds", **labels) == 40


def test_a_transport_error_counts_only_once_a_probe_confirms_it() -> None:
    answers = [True, False, True]
    clock = _Clock()
    tracker = FaultTracker("p", "sink/t3", probe=lambda: answers.pop(0), clock=clock)
    reach = {"pipeline": "p", "process": "sink/t3"}
    labels = {**reach, "fault": "broker_unreachable"}
    tracker.kafka_error(_Err("_TRANSPORT"))  # e.g. the broker closed an idle connection
    tracker.probe_once()  # reachable: nothing happened
    assert _value("headrace_fault_recoveries_total", **labels) is None
    assert _value("headrace_broker_reachable", **reach) == 1
    tracker.kafka_error(_Err("_TRANSPORT"))
    clock.now += 5
    tracker.probe_once()  # unreachable: the fault began at the error
    assert _value("headrace_broker_reachable", **reach) == 0
    clock.now += 5
    tracker.probe_once()
    assert _value("headrace_last_fault_recovery_seconds", **labels) == 10


def test_other_kafka_errors_are_no_fault() -> None:
    tracker = FaultTracker("p", "sink/t4", probe=lambda: True)
    tracker.kafka_error(_Err("_UNKNOWN_TOPIC"))
    tracker.kafka_error(object())  # not a KafkaError at all
    assert tracker.open == {}
