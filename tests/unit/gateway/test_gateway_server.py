"""The gateway's listening socket: a taken port is a config error naming gateway.port;
with processes > 1 the pipeline's gateway processes share one port (SO_REUSEPORT)."""

from __future__ import annotations

import pytest

from gateway.server import _bind
from headrace.errors import ConfigError


def test_a_taken_port_is_a_config_error() -> None:
    first = _bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}") as err:
            _bind("127.0.0.1", port)
        assert err.value.key == "gateway.port" and err.value.exit_code == 2
    finally:
        first.close()


def test_several_processes_share_the_port() -> None:
    first = _bind("127.0.0.1", 0, shared=True)
    try:
        second = _bind("127.0.0.1", first.getsockname()[1], shared=True)
        assert second.getsockname() == first.getsockname()
        second.close()
    finally:
        first.close()
