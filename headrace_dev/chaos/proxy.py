"""A TCP proxy that can slow a server down: the chaos runner's *slow sink*.

The MongoDB sinks of a chaos round talk to FerretDB through ``SlowProxy`` (their
``HEADRACE_MONGO_URI`` names the proxy's port). Normally it forwards bytes as they come; while
``delay`` is set, every chunk the server sends back waits that long first, so each write takes
longer, batches queue up, back-pressure builds through the sinks into Kafka, and the runner
measures that the processes' memory stays bounded (peak RSS per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

__all__ = ["SlowProxy"]


class SlowProxy:
    """Forwards 127.0.0.1:``port`` (a free one) to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay = 0.0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="chaos-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> SlowProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"chaos: the proxy to {self.target} did not start")
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, then the loop."""

        def close_all() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._open):
                writer.close()
            self._loop.call_later(0.1, self._loop.stop)

        self._loop.call_soon_threadsafe(close_all)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, slow=False),
                self._pipe(up_reader, writer, slow=True),
                return_exceptions=True,
            )
        finally:
            self._open -= {writer, up_writer}

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, slow: bool
    ) -> None:
        try:
            while chunk := await src.read(65536):
                if slow and self.delay > 0:
                    await asyncio.sleep(self.delay)
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
