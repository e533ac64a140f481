"""The headrace console, opened in headless Chromium during a running pipeline, shows data in
every panel whose metrics the pipeline's processes export, and says so in words where
nothing exports them (no gateway running); a screenshot is kept.

The pipeline runs under `headrace run` (MariaDB -> Kafka -> a rate-limited stage -> MongoDB),
its processes registered with the stack's Prometheus; the console is read with
``?pipeline=<this test's pipeline>``, so other tests' processes on the shared Prometheus do
not count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from headrace.observability import CONSOLES
from headrace.observability.panels import PANELS, Panel
from headrace_dev.console_shot import console_link, ensure_chromium, screenshot

#: panels this pipeline's processes (a source, a worker with a rate-limited stage, a sink)
#: feed: each must show data
FED = {
    "records",
    "lag",
    "dlq",
    "ratelimit",
    "window",
    "sink_latency",
    "sink_retries",
    "e2e",
    "e2e_share",
    "health",
    "processes",
}


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed with the stack's apt mechanism the first time."""
    return ensure_chromium(log=print)


def _pipeline(
    tmp_path: Path, url: str, bootstrap: str, mongo_uri: str, unique: str, rate: int
) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""
name: {unique}
kafka: {{bootstrap_servers: '{bootstrap}'}}
sources:
  orders_db:
    type: mysql
    url: '{url}'
    table: orders
    mode: incrementing
    incrementing_column: id
    topic: {unique}.orders.raw
    key: [id]
    poll_interval: 1s
stages:
  clean:
    from: {unique}.orders.raw
    to: {unique}.orders.clean
    transform:
      - filter: "status != 'cancelled' and qty > 0"
      - set: {{total: "price * qty"}}
    rate_limit: {{rate: {rate}, per: 1s, burst: 5, on_excess: delay}}
sinks:
  docs:
    type: mongodb
    from: {unique}.orders.clean
    uri: '{mongo_uri}'
    database: {unique}
    collection: orders
    id: [id]
""")
    return path


def _require_current_console(prometheus: str) -> None:
    """The stack's Prometheus serves this checkout's console (its template folder, from
    /api/v1/status/flags, holds the same files); fails naming the fix otherwise."""
    with urllib.request.urlopen(f"{prometheus}/api/v1/status/flags", timeout=10) as resp:
        folder = Path(json.loads(resp.read())["data"].get("web.console.templates", ""))
    fix = (
        "run `headrace stack up` (it installs the console; a Prometheus started without it "
        "needs `headrace stack down prometheus && headrace stack up prometheus`)"
    )
    installed = folder / "headrace.html"
    assert installed.is_file(), f"{prometheus} serves no headrace console from {folder}; {fix}"
    shipped = (CONSOLES / "headrace.html").read_text()
    assert installed.read_text() == shipped, f"{installed} is not this checkout's console; {fix}"


def _has_series(prometheus: str, panel: Panel, pipeline: str) -> bool:
    """Whether any of ``panel``'s queries returns a series over the last 5 minutes (what the
    console's graphs ask for), with ``$pipeline`` set to ``pipeline``."""
    now = time.time()
    for query in panel.queries:
        params = {
            "query": query.expr.replace("$pipeline", pipeline),
            "start": str(now - 300),
            "end": str(now),
            "step": "15",
        }
        url = f"{prometheus}/api/v1/query_range?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
        if body["data"]["result"]:
            return True
    return False


def test_console_shows_every_panel_of_a_running_pipeline(
    chromium: str,
    orders_db: tuple[str, list[dict[str, Any]]],
    kafka_bootstrap: str,
    mongo_uri: str,
    promql,
    unique: str,
    tmp_path: Path,
    repo_root: Path,
    stack_dir: Path,
    stack_env: dict[str, str],
    new_topic,  # teardown deletes the <unique> topics and groups
) -> None:
    url, rows = orders_db
    kept = sum(1 for r in rows if r["s"] != "cancelled" and r["q"] > 0)
    pipeline = _pipeline(tmp_path, url, kafka_bootstrap, mongo_uri, unique, rate=25)
    prometheus = stack_env["HEADRACE_PROMETHEUS_URL"]
    _require_current_console(prometheus)
    status = subprocess.run(
        [sys.executable, "-m", "headrace_cli.main", "stack", "status"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"console: {prometheus}/consoles/headrace.html" in status.stdout, status.stdout
    printed = f"{prometheus}/consoles/headrace.html?pipeline={unique}"
    console = console_link(prometheus, pipeline=unique, duration=300)  # graphs: last 5 min
    env = {
        **os.environ,
        "HEADRACE_PROMETHEUS_URL": prometheus,
        "HEADRACE_PROMETHEUS_TARGETS": stack_env["HEADRACE_PROMETHEUS_TARGETS"],
    }
    out_file = tmp_path / "run.log"
    started = time.monotonic()
    with open(out_file, "w") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "headrace_cli.main", "run", "-f", str(pipeline)],
            cwd=repo_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    p = f'pipeline="{unique}"'
    written = f'sum(headrace_records_total{{{p},kind="sink",outcome!="dlq"}})'
    e2e = f"sum(headrace_end_to_end_seconds_count{{{p}}})"
    waited = f"sum(headrace_rate_limit_wait_seconds_total{{{p}}})"
    try:
        deadline = time.monotonic() + 150
        w = e = rl = 0.0
        while time.monotonic() < deadline:
            w, e, rl = promql(written), promql(e2e), promql(waited)
            if w == kept and e == kept and rl > 0:
                break
            time.sleep(2)
        assert (w, e) == (kept, kept) and rl > 0, (
            f"Prometheus saw {w} written, {e} end-to-end observations (expected {kept}), "
            f"{rl} s of rate-limit waits; run log:\n{out_file.read_text()[-3000:]}"
        )
        time.sleep(6)  # one more scrape: every rate() has two samples after the last record
        before = {panel.key: _has_series(prometheus, panel, unique) for panel in PANELS}
        shot = tmp_path / "console.png"
        view = screenshot(console, shot, wait=20, timeout=90)
        after = {panel.key: _has_series(prometheus, panel, unique) for panel in PANELS}
    finally:
        run.terminate()
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        MongoClient(mongo_uri).drop_database(unique)

    log = out_file.read_text()
    assert f"[run] dashboard: {printed}" in log, log[-3000:]
    kept_copy = Path(os.environ.get("HEADRACE_SCREENSHOTS") or stack_dir / "screenshots")
    kept_copy.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept_copy / "console-browser-test.png")
    print(f"console screenshot: {kept_copy / 'console-browser-test.png'}")
    print(f"console read {time.monotonic() - started:.0f}s after the pipeline started")

    summary = view.summary()
    assert view.ready, f"not every panel finished loading:\n{summary}"
    assert set(view.states) == {panel.key for panel in PANELS}, summary
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    for panel in PANELS:
        state = view.states[panel.key]
        if panel.key in FED:
            assert state == "data", f"{panel.key} shows no data:\n{summary}"
            continue
        if before[panel.key] != after[panel.key]:
            continue  # its series appeared or ended while the page loaded: either is right
        if before[panel.key]:
            assert state == "data", f"{panel.key} has series in Prometheus:\n{summary}"
        else:
            assert state == "empty", f"{panel.key} has no series in Prometheus:\n{summary}"
            assert view.empty_texts.get(panel.key) == panel.empty, summary
    gateway = [p for p in PANELS if p.key.startswith("gateway")]
    for panel in gateway:
        if not before[panel.key]:
            assert view.empty_texts[panel.key] == "no gateway running", summary
