"""Schema files, the local registry file, and the Confluent client against a fake registry."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fixtures.avro import ORDER_MIN

from schemas import ConfluentRegistry, LocalRegistry, SchemaNotFound, fingerprint, load_schema

ORDER = ORDER_MIN


def test_load_schema_reads_avsc(tmp_path: Path) -> None:
    (tmp_path / "order.avsc").write_text(json.dumps(ORDER))
    assert load_schema(tmp_path, "order") == ORDER


def test_missing_schema_names_file_and_lists_known(tmp_path: Path) -> None:
    (tmp_path / "order.avsc").write_text(json.dumps(ORDER))
    with pytest.raises(SchemaNotFound) as err:
        load_schema(tmp_path, "ordre")
    assert "ordre.avsc" in str(err.value)
    assert "order" in str(err.value)


def test_invalid_schema_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.avsc").write_text('{"type": "record", "name": "x", "fields": [{"name": 1}]}')
    with pytest.raises(SchemaNotFound, match="not a valid Avro schema"):
        load_schema(tmp_path, "bad")


def test_local_registry_ids_are_stable_and_new_schema_gets_new_id(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path)
    first = reg.schema_id("order", "orders", ORDER)
    assert reg.schema_id("order", "orders", dict(ORDER)) == first
    changed = {**ORDER, "fields": [*ORDER["fields"], {"name": "x", "type": "int", "default": 0}]}
    second = reg.schema_id("order", "orders", changed)
    assert second == first + 1
    # a fresh instance (another process) reads the same file
    assert LocalRegistry(tmp_path).schema_id("order", "orders", ORDER) == first
    saved = json.loads((tmp_path / "registry.json").read_text())["schemas"]
    assert [e["fingerprint"] for e in saved] == [fingerprint(ORDER), fingerprint(changed)]


def test_corrupt_local_registry_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "registry.json").write_text("{nope")
    with pytest.raises(SchemaNotFound, match="corrupt"):
        LocalRegistry(tmp_path).schema_id("order", "orders", ORDER)


class _FakeRegistry(BaseHTTPRequestHandler):
    """Just enough of the Confluent Schema Registry REST API to register schemas."""

    subjects: ClassVar[dict[str, list[str]]] = {}
    ids: ClassVar[dict[str, int]] = {}
    requests: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path))
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            text = body["schema"]
            sid = self.ids.setdefault(text, len(self.ids) + 100)
            self.subjects.setdefault(parts[1], []).append(text)
            self._send(200, {"id": sid})
        else:
            self._send(404, {"error_code": 404, "message": "not found"})

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path))
        self._send(404, {"error_code": 40401, "message": "not found"})

    def _send(self, code: int, doc: dict[str, object]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_registry():
    _FakeRegistry.subjects, _FakeRegistry.ids, _FakeRegistry.requests = {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_confluent_registry_registers_under_topic_value_subject(fake_registry: str) -> None:
    reg = ConfluentRegistry(fake_registry)
    sid = reg.schema_id("order", "shop.orders", ORDER)
    assert sid == 100
    assert list(_FakeRegistry.subjects) == ["shop.orders-value"]
    registered = json.loads(_FakeRegistry.subjects["shop.orders-value"][0])
    assert registered == ORDER
    # cached: the same schema is not registered twice by one process
    assert reg.schema_id("order", "shop.orders", ORDER) == 100
    assert sum(1 for m, _ in _FakeRegistry.requests if m == "POST") == 1
