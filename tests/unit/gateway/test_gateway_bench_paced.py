"""The paced figure splits its latencies where each request was written: the generator's own
delay before, the gateway's part after, and says what its percentiles leave out."""

from __future__ import annotations

from typing import Any

from headrace_dev.bench.gateway import p99_figure
from headrace_dev.bench.gateway_paced import Paced


def test_the_note_splits_the_latency_at_the_write() -> None:
    latencies = [0.001 * (i + 1) for i in range(100)]
    result = Paced(
        1000,
        1000,
        1.0,
        100,
        3,
        latencies,
        0.25,
        send_lags=[0.0005] * 100,
        write_lags=[0.001] * 98 + [0.03] * 2,
        answered=[0.002] * 99 + [0.05],
    )
    note = p99_figure(result, gateway_cpu_s=0.5, peak_mb=70.0).note
    assert "wrote the request p50 1.0 ms / p99 30.0 ms after it was due" in note
    assert "from written to answered (the gateway's part): p50 2.0 ms / p99 2.0 ms" in note
    assert "the 3 failed requests are in no percentile" in note


def test_without_write_times_the_note_is_as_before() -> None:
    result = Paced(1000, 1000, 1.0, 1, 0, [0.001], 0.25, send_lags=[0.001])
    note = p99_figure(result, gateway_cpu_s=0.5, peak_mb=70.0).note
    assert "wrote the request" not in note and "in no percentile" not in note


class _Server:
    """A local HTTP/1.1 server answering every request with ``status`` (in a thread)."""

    def __init__(self, status: int) -> None:
        import asyncio
        import threading

        self.status = status
        self.requests: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self.stop: Any = None

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    self.requests.append(head + await reader.readexactly(length))
                    writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % self.status)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):  # the client closed it
                writer.close()

        async def main() -> None:
            self.stop = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.stop.wait()
            server.close()

        self.loop.run_until_complete(main())

    def __enter__(self) -> _Server:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


def test_the_generator_offers_every_request_on_time_and_times_the_answers() -> None:
    from headrace_dev.bench.gateway_paced import CONNECTIONS, generate

    with _Server(200) as server:
        url = f"http://127.0.0.1:{server.port}/topics/t/records"
        result = generate(url, 200, 0.25, b'{"a": 1}', "tok")
    assert (result.offered, result.ok, result.failed) == (50, 50, 0)
    assert len(result.latencies) == len(result.answered) == len(result.send_lags) == 50
    assert all(0 < a <= lat for a, lat in zip(result.answered, result.latencies, strict=True))
    assert result.connections >= CONNECTIONS and result.cpu_s > 0
    assert result.seconds >= 0.25
    first = server.requests[0]
    assert first.startswith(b"POST /topics/t/records HTTP/1.1\r\n")
    assert b"Authorization: Bearer tok\r\n" in first and first.endswith(b'\r\n\r\n{"a": 1}')


def test_answers_other_than_2xx_are_failures_in_no_percentile() -> None:
    from headrace_dev.bench.gateway_paced import generate

    with _Server(503) as server:
        result = generate(f"http://127.0.0.1:{server.port}/x", 100, 0.1, b"{}", "tok")
    assert (result.ok, result.failed, result.latencies) == (0, 10, [])
