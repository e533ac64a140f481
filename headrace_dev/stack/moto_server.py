"""moto's own S3/DynamoDB application behind a faster HTTP front: ``python -m`` this module.

The same ``DomainDispatcherApplication`` and backends as the ``moto_server`` script (same
answers, same state model), with three per-request costs removed that made moto answer only
~200-300 requests/s here (py-spy: ~18% of the time in DynamoDB's own ``put_item``):

- the backend lookup per host name is cached (moto lists its package directory on every
  request, under a global lock; the answer depends only on the host string);
- no access log line per request (errors are still logged);
- HTTP/1.1 keep-alive: werkzeug's dev server closes every connection (``Connection: close``
  and a 10 ms drain per request), so each request was a new TCP connection and a new thread.
  Here a connection's thread serves its requests one after another: the request body is read
  whole (``Content-Length``), the response is buffered and sent with its length. A request
  with a chunked body, or without a length on a method that carries one, is served the old
  way (one request, then the connection closes).

Usage: ``python -m headrace_dev.stack.moto_server -H 127.0.0.1 -p 5000``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer

__all__ = ["CachedDispatcher", "KeepAliveHandler", "main", "make_server"]

log = logging.getLogger("headrace.moto")

#: seconds an idle keep-alive connection (and its thread) is kept
IDLE_TIMEOUT = 120.0
_NO_BODY = {"GET", "HEAD", "DELETE", "OPTIONS"}


class CachedDispatcher(DomainDispatcherApplication):
    """moto's dispatcher with ``get_backend_for_host`` memoised per host string."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # called under self.lock (get_application), so the dict needs no lock of its own
        try:
            return self._backends[host]
        except KeyError:
            backend = self._backends[host] = super().get_backend_for_host(host)
            return backend


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, speaking HTTP/1.1 with persistent connections, no access log."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    # headers and body are two writes: with Nagle on, on a kept-alive connection the body
    # waits for the client's delayed ACK of the headers (~40 ms a request)
    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No line per request: at thousands of requests/s the log itself costs time."""

    def run_wsgi(self) -> None:
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked or (length is None and self.command not in _NO_BODY):
            super().run_wsgi()  # werkzeug's path: answers, then closes the connection
            return
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            expected = int(length) if length else 0
        except ValueError:
            self.send_error(400, f"Content-Length {length!r} is not a number")
            return
        body = self.rfile.read(expected) if expected else b""
        if len(body) < expected:  # the client went away mid-request: never act on a part
            self.close_connection = True
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        try:
            status, headers, chunks = self._call(self.server.app, environ)
        except Exception:
            log.exception("moto: error on %s %s", self.command, self.path)
            status, headers, chunks = self._call(InternalServerError(), environ)
            self.close_connection = True
        self._respond(status, headers, b"".join(chunks))

    def _call(
        self, app: Any, environ: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        """Run the WSGI ``app``; the status, headers and whole body it produced."""
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return written.append

        result: Iterable[bytes] = app(environ, start_response)
        try:
            written.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started[0], started[1], written

    def _respond(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        names = set()
        for name, value in headers:
            lower = name.lower()
            if lower in ("connection", "transfer-encoding"):
                continue
            names.add(lower)
            self.send_header(name, value)
        bodiless = self.command == "HEAD" or code in (204, 304) or 100 <= code < 200
        if "content-length" not in names and not bodiless:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and not bodiless:
            self.wfile.write(body)
        self.wfile.flush()


def make_server(host: str, port: int) -> ThreadedWSGIServer:
    """A threaded server for moto's application on ``host:port`` (port 0: a free one)."""
    return ThreadedWSGIServer(host, port, CachedDispatcher(), handler=KeepAliveHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m headrace_dev.stack.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to bind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = make_server(args.host, args.port)
    os.environ.setdefault("MOTO_PORT", str(server.port))  # as moto_server does (self-links)
    log.info("moto %s on http://%s:%d (keep-alive)", _moto_version(), args.host, server.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _moto_version() -> str:
    import moto

    return str(getattr(moto, "__version__", "?"))


if __name__ == "__main__":
    main()
