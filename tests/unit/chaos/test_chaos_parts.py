"""The chaos runner's parts that need no stack: fault labels and checks, progress snapshots,
the results tables and the page they are recorded into."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace_dev.chaos.faults import Episode, Fault
from headrace_dev.chaos.probe import Snapshot
from headrace_dev.chaos.runner import ChaosResult, RoundResult, _affected
from headrace_dev.chaos.scenario import SCENARIOS
from headrace_dev.commands.chaos_cmd import BEGIN, END, record, render


def test_fault_labels_and_refusals() -> None:
    assert Fault("pause", "kafka", 30).name == "kafka paused 30s"
    assert Fault("kill", "mariadb", 3).name == "mariadb SIGKILL + restart"
    assert Fault("restart", "ferretdb").name == "ferretdb SIGTERM + restart"
    assert Fault("kill9", "sink:").name == "sink kill -9"
    assert Fault("term", "produce:").name == "produce SIGTERM"
    with pytest.raises(ValueError, match="in memory"):
        Fault("restart", "moto")
    with pytest.raises(ValueError, match="unknown server"):
        Fault("pause", "postgres", 3)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("flood", "worker")


def test_every_scenario_injects_distinct_known_faults() -> None:
    for scenario in SCENARIOS.values():
        names = [f.name for f in scenario.faults]
        assert len(names) == len(set(names)), scenario.name
    ci = {f.target for f in SCENARIOS["ci"].faults}
    assert {"kafka", "mariadb", "ferretdb", "worker", "sink:", "produce:"} <= ci


def test_progress_compares_only_what_both_readings_know() -> None:
    before = Snapshot({"a": 10}, {"g": (5, 3)})
    assert not Snapshot({"a": 10}, {"g": (5, 3)}).advanced(before, ["a"], ["g"])
    assert Snapshot({"a": 11}, {"g": (5, 3)}).advanced(before, ["a"], ["g"])
    assert Snapshot({"a": 10}, {"g": (6, 2)}).advanced(before, ["a"], ["g"])
    # a group that was unreadable before (its coordinator loading) is not progress
    assert not Snapshot({"a": 10}, {"g": (5, 3), "h": (9, 0)}).advanced(before, [], ["h"])
    assert Snapshot({}, {"g": (5, 0)}).idle(["g"])
    assert not Snapshot({}, {"g": (5, 1)}).idle(["g"])
    assert not Snapshot({}, {}).idle(["g"])  # unknown is not idle


class _Progress:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def read(self) -> Snapshot:
        return self.snap


def test_a_fault_is_judged_by_the_part_of_the_pipeline_it_hits() -> None:
    groups = {
        "headrace-shop": (1, 0),
        "headrace.shop.sink.revenue_mongo": (1, 0),
        "headrace.shop.sink.orders_dynamo": (1, 0),
    }
    probe = _Progress(Snapshot({}, groups))
    sources = {"orders": ("mysql", "shop.orders"), "customers": ("s3", "shop.customers")}

    def hit(fault: Fault, victim: str) -> tuple[list[str], list[str], list[str]]:
        return _affected(Episode(fault, victim, 0, 0), probe, sources)  # type: ignore[arg-type]

    assert hit(Fault("pause", "mariadb", 1), "mariadb") == (["shop.orders"], [], ["orders"])
    assert hit(Fault("pause", "ferretdb", 1), "ferretdb")[1] == ["headrace.shop.sink.revenue_mongo"]
    assert hit(Fault("kill9", "worker"), "worker")[1] == ["headrace-shop"]
    assert hit(Fault("term", "sink:"), "sink:orders_dynamo")[1] == [
        "headrace.shop.sink.orders_dynamo"
    ]
    assert hit(Fault("kill9", "produce:"), "produce:customers") == (
        ["shop.customers"],
        [],
        ["customers"],
    )
    topics, all_groups, srcs = hit(Fault("kill", "kafka", 1), "kafka")
    assert sorted(topics) == ["shop.customers", "shop.orders"]
    assert sorted(all_groups) == sorted(groups) and sorted(srcs) == ["customers", "orders"]


def _result(ok: bool) -> ChaosResult:
    eps = [
        Episode(Fault("pause", "kafka", 30), "kafka", 100.0, 130.0, recovered=141.0),
        Episode(Fault("pause", "kafka", 30), "kafka", 200.0, 230.0, recovered=251.0),
        Episode(Fault("kill9", "worker"), "worker", 300.0, 300.0, recovered=None),
    ]
    rnd = RoundResult(1, 1000, episodes=eps, run_exit=0, seconds=60)
    rnd.oracle = [("revenue", 10, 10, 0 if ok else 2)]
    return ChaosResult("ci", 1, [rnd], {"worker": 300 * 2**20}, started=0.0, ended=600.0)


def test_tables_count_recoveries_and_failures() -> None:
    result = _result(ok=True)
    assert result.fault_table() == [
        ["kafka paused 30s", "2", "46.0", "51.0", "0"],
        ["worker kill -9", "1", "-", "-", "1"],
    ]
    assert not result.ok  # the worker kill was never recovered from
    text = render(result)
    assert "| kafka paused 30s | 2 | 46.0 | 51.0 | 0 |" in text
    assert "| worker | 300 |" in text
    assert "FAILED" in text


def test_record_replaces_only_the_text_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "chaos.md"
    page.write_text(f"# Chaos\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    record("new table\n", _result(ok=True), page)
    text = page.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("# Chaos\n\nintro\n") and text.endswith("\n\nafter\n")
    page.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        record("x", _result(ok=True), page)


def test_slow_and_mid_recovery_faults() -> None:
    assert Fault("slow", "ferretdb", 60, delay=0.5).name == "ferretdb slow 60s (+500 ms a reply)"
    assert Fault("kill9-again", "worker").name == "worker kill -9 mid-recovery"
    with pytest.raises(ValueError, match="only ferretdb"):
        Fault("slow", "kafka", 10, delay=0.5)
    with pytest.raises(ValueError, match="delay > 0"):
        Fault("slow", "ferretdb", 10)


def test_the_proxy_forwards_and_delays_replies_while_slow() -> None:
    import socket
    import socketserver
    import threading
    import time

    from headrace_dev.chaos.proxy import SlowProxy

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(1024):
                self.request.sendall(data)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = SlowProxy("127.0.0.1", server.server_address[1]).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:

            def round_trip() -> float:
                began = time.monotonic()
                conn.sendall(b"ping")
                assert conn.recv(1024) == b"ping"
                return time.monotonic() - began

            assert round_trip() < 0.2
            proxy.delay = 0.3
            assert round_trip() >= 0.3
            proxy.delay = 0.0
            assert round_trip() < 0.2
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()
