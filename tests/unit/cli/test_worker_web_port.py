"""``headrace worker``'s web port: the default moves aside when another process holds it."""

from __future__ import annotations

import socket

from headrace_cli.worker_cmd import DEFAULT_WEB_PORT, web_port


def test_a_requested_port_is_kept() -> None:
    assert web_port(1234) == 1234


def test_the_default_port_moves_when_taken() -> None:
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", DEFAULT_WEB_PORT))
            holder.listen()
        except OSError:
            pass  # already held by another process: the same situation
        port = web_port(None)
    assert port != DEFAULT_WEB_PORT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # and it was free
