"""console_shot reads each panel's state and explicit empty text out of the console's DOM."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from headrace.errors import StackError
from headrace_dev import console_shot

DOM = """<html><head></head><body data-headrace-ready="1">
<h1>headrace</h1>
<div class="headrace_panels">
<div class="headrace_panel" id="panel-records" data-state="data">
<h3>Throughput per stage (records/s)</h3>
<div class="headrace_empty" style="display: none;">no headrace process has handled a record</div>
<div class="headrace_graph"><table class="prom_graph_table"><tr><td class="rickshaw_graph">
<svg width="560"></svg></td></tr></table></div>
</div>
<div class="headrace_panel" id="panel-gateway_rates" data-state="empty">
<h3>Gateway requests</h3>
<div class="headrace_empty" style="">no gateway
  running</div>
<div class="headrace_graph"><div class="prom_graph_error">No timeseries returned</div></div>
</div>
<div class="headrace_panel" id="panel-lag" data-state="loading">
<h3>Consumer lag</h3>
<div class="headrace_empty" style="display: none">no worker or sink is consuming</div>
</div>
</div></body></html>"""


def _fake_chromium(monkeypatch: pytest.MonkeyPatch, stdout: str, calls: list[list[str]]) -> None:
    def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        for arg in args:
            if arg.startswith("--screenshot="):
                Path(arg.split("=", 1)[1]).write_bytes(b"\x89PNG fake")
        return subprocess.CompletedProcess(args, 0, stdout, "")

    monkeypatch.setattr(console_shot, "_chromium", run)


def test_panel_states_and_shown_empty_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    _fake_chromium(monkeypatch, DOM, calls)
    view = console_shot.read_console("http://x/consoles/headrace.html", wait=5)
    assert view.ready
    assert view.states == {"records": "data", "gateway_rates": "empty", "lag": "loading"}
    assert view.empty_texts == {"gateway_rates": "no gateway running"}
    assert view.titles["records"] == "Throughput per stage (records/s)"
    assert calls == [
        ["--virtual-time-budget=5000", "--dump-dom", "http://x/consoles/headrace.html"]
    ]
    assert "gateway_rates: empty (no gateway running)" in view.summary()


def test_screenshot_writes_the_png_and_returns_the_view(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[list[str]] = []
    _fake_chromium(monkeypatch, DOM, calls)
    target = tmp_path / "shots" / "episode-1.png"
    view = console_shot.screenshot("http://x/c", target, width=800, height=600)
    assert view.screenshot == target and target.read_bytes().startswith(b"\x89PNG")
    assert "--window-size=800,600" in calls[1]


def test_a_page_without_panels_is_an_error_naming_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_chromium(monkeypatch, "<html><body>404 page not found</body></html>", [])
    with pytest.raises(StackError, match=r"http://x/nope shows no headrace panels"):
        console_shot.read_console("http://x/nope")


def test_console_link_sets_the_pipeline_and_the_graphs_time_range() -> None:
    assert console_shot.console_link("http://p:9090/") == "http://p:9090/consoles/headrace.html"
    link = console_shot.console_link("http://p:9090", pipeline="shop", duration=300, end=1700)
    assert link == (
        "http://p:9090/consoles/headrace.html?pipeline=shop"
        "#pctc%7B%22duration%22%3A300%2C%22endTime%22%3A1700%7D"
    )
