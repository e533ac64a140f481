"""Stack configuration: component selection, port overrides, env file, busy-port errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from headrace.errors import StackError
from headrace_dev.stack import DEFAULT_PORTS, Stack, StackPaths, read_env_file


def _stack(tmp_path: Path) -> Stack:
    return Stack(StackPaths(root=tmp_path / ".stack", cache=tmp_path / "cache"), log=lambda m: None)


def test_unknown_component_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"unknown stack component 'kafak'.*kafka, mariadb"):
        _stack(tmp_path).select(["kafak"])


def test_port_override_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADRACE_STACK_KAFKA_PORT", raising=False)
    monkeypatch.setenv("HEADRACE_STACK_MOTO_PORT", "5999")
    stack = _stack(tmp_path)
    assert stack.components["moto"].port == 5999
    assert stack.components["kafka"].port == DEFAULT_PORTS["kafka"]


def test_bad_port_override_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_STACK_KAFKA_PORT", "ninety")
    with pytest.raises(StackError, match="HEADRACE_STACK_KAFKA_PORT='ninety' is not a port"):
        _stack(tmp_path)


def test_env_file_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEFAULT_PORTS:
        monkeypatch.delenv(f"HEADRACE_STACK_{name.upper()}_PORT", raising=False)
    stack = _stack(tmp_path)
    stack.paths.ensure()
    env = read_env_file(stack.write_env_file())
    assert env["HEADRACE_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["HEADRACE_MONGO_URI"] == "mongodb://127.0.0.1:27017"
    assert env["HEADRACE_AWS_ENDPOINT"] == "http://127.0.0.1:5000"
    assert env["HEADRACE_MYSQL_URL"].startswith("mysql+pymysql://headrace:")
    assert env["HEADRACE_STACK_DIR"] == str(stack.paths.root)


def test_gateway_secret_is_random_kept_and_private(tmp_path: Path) -> None:
    """The shop example's gateway secret: long enough for HS256, the same on every
    ``stack up`` (tokens minted earlier stay valid), readable by the owner only."""
    stack = _stack(tmp_path)
    stack.paths.ensure()
    first = read_env_file(stack.write_env_file())["HEADRACE_GATEWAY_SECRET"]
    assert len(first) >= 32
    assert read_env_file(stack.write_env_file())["HEADRACE_GATEWAY_SECRET"] == first
    assert (stack.paths.conf / "gateway-secret").stat().st_mode & 0o077 == 0
    assert _stack(tmp_path / "other").gateway_secret() != first


def test_busy_port_names_component_port_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setenv("HEADRACE_STACK_MOTO_PORT", str(port))
        stack = _stack(tmp_path)
        with pytest.raises(StackError) as err:
            stack._check_ports_free(stack.components["moto"])
    msg = str(err.value)
    assert f"port {port} (for moto)" in msg
    assert "HEADRACE_STACK_MOTO_PORT" in msg


def test_status_of_a_stack_never_started(tmp_path: Path) -> None:
    rows = _stack(tmp_path).status()
    assert [r.name for r in rows] == list(DEFAULT_PORTS)
    assert {r.state for r in rows} == {"stopped"}
