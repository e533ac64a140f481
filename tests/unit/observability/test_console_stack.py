"""The local stack's Prometheus serves the console: its command line, the copied files, the
"outdated" note for a Prometheus started without them, and ``console_url``'s answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from headrace.observability import CONSOLE_PATH, CONSOLES, console_url
from headrace_dev.stack import StackPaths
from headrace_dev.stack.prometheus import Prometheus


@pytest.fixture
def prom(tmp_path: Path) -> Prometheus:
    paths = StackPaths(root=tmp_path / ".stack", cache=tmp_path / "cache")
    paths.ensure()
    return Prometheus(paths=paths, port=19999)


def test_prepare_installs_the_console_and_the_command_points_at_it(prom: Prometheus) -> None:
    prom.prepare(lambda _: None)
    prom.prepare(lambda _: None)  # idempotent
    assert (prom.consoles_dir / "headrace.html").read_bytes() == (
        CONSOLES / "headrace.html"
    ).read_bytes()
    assert (prom.console_libraries_dir / "headrace.lib").read_bytes() == (
        CONSOLES / "headrace.lib"
    ).read_bytes()
    assert not (prom.consoles_dir / "headrace.lib").exists()
    argv = [*prom.command()]
    assert f"--web.console.templates={prom.consoles_dir}" in argv
    assert f"--web.console.libraries={prom.console_libraries_dir}" in argv
    assert prom.outdated(argv) is None
    assert prom.console_url() == "http://127.0.0.1:19999/consoles/headrace.html"
    assert prom.env()["HEADRACE_CONSOLE_URL"] == prom.console_url()


def test_a_prometheus_started_without_the_console_is_outdated(prom: Prometheus) -> None:
    prom.prepare(lambda _: None)
    old = [a for a in prom.command() if not a.startswith("--web.console")]
    why = prom.outdated(old)
    assert why is not None and "without the headrace console" in why
    assert prom.console_url() in why


def test_console_files_that_differ_from_the_checkout_are_outdated(prom: Prometheus) -> None:
    prom.prepare(lambda _: None)
    (prom.consoles_dir / "headrace.html").write_text("an older console")
    why = prom.outdated(prom.command())
    assert why is not None and "differ from this checkout's" in why
    prom.install_consoles()
    assert prom.outdated(prom.command()) is None


class _Flags(BaseHTTPRequestHandler):
    flags: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        body = json.dumps({"status": "success", "data": self.flags}).encode()
        self.send_response(200 if self.path == "/api/v1/status/flags" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[tuple[str, type[_Flags]]]:
    handler = type("Handler", (_Flags,), {"flags": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_console_url_only_when_prometheus_serves_the_console(
    fake_prometheus: tuple[str, type[_Flags]], prom: Prometheus
) -> None:
    url, handler = fake_prometheus
    handler.flags = {"web.console.templates": "consoles"}  # Prometheus's default: none of ours
    assert console_url(url) is None
    prom.install_consoles()
    handler.flags = {"web.console.templates": str(prom.consoles_dir)}
    assert console_url(url + "/") == url + CONSOLE_PATH


def test_console_url_is_none_when_nothing_answers() -> None:
    assert console_url("http://127.0.0.1:9", timeout=0.5) is None
