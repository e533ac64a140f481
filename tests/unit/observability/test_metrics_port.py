"""The metrics endpoint binds the port it is given, or a free one when that one is taken."""

from __future__ import annotations

import socket

from headrace import metrics


def test_a_taken_port_falls_back_to_a_free_one_instead_of_crashing() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = metrics._bind(port)  # two processes asked for the same port at once
        try:
            assert server.port != port and server.port > 0
        finally:
            server.close()


def test_a_free_port_is_used_as_given() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = metrics._bind(port)
    try:
        assert server.port == port
    finally:
        server.close()
