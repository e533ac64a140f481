"""The gateway bench's open-loop, paced generator: a process of its own that sends request
``i`` at ``start + i / rate`` whatever the answers, and times each from when it was *due*,
so a stalled gateway shows in the percentiles (no coordinated omission).

``run_paced(url, rate, seconds, body_file, token)`` (in the bench process) runs
``python -m headrace_dev.bench.gateway_paced URL RATE SECONDS BODY_FILE`` with the bearer
token in ``HRBENCH_GATEWAY_TOKEN``, which prints its ``Paced`` as one JSON object.

Why a process and raw HTTP: the previous generator (aiohttp in the bench process) cost
~200 us of CPU a request and, on the shared 2-core machine, began sending requests up to
265 ms (p99) after they were due in one full run: its own delay, inside the figure. This one
writes a prebuilt HTTP/1.1 request (headers and body in one ``write``) on a keep-alive
connection and parses the answer with httptools (uvicorn's parser, in C), on uvloop, with
the cyclic garbage collector off. ``CONNECTIONS`` connections are opened before the clock
starts and used in turn (the longest free first, so the kernel's spreading of connections
over the gateway processes holds for the requests too); more are opened only when every one
is busy, their connect time then inside the latency as it would be for a client.

Timing, all ``time.perf_counter``, in ``Paced``:

- ``send_lags``: due -> the generator took the request up. It sleeps ``TICK`` at least
  between requests (uvloop's timer step), so up to ~1 ms of its own delay is in a latency;
- ``write_lags``: due -> the request was written to its connection's socket (later than
  taken up only when it waited for a connection);
- ``latencies``: due -> the whole answer was read (2xx only; others count as ``failed``);
- ``answered``: written -> answered, the gateway's part (plus the loopback).

Its CPU cost (``cpu_s``) is its own ``getrusage`` over the run, not its start-up.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from headrace.errors import HeadraceError

__all__ = ["CONNECTIONS", "TOKEN_ENV", "Paced", "generate", "request_bytes", "run_paced"]

TOKEN_ENV = "HRBENCH_GATEWAY_TOKEN"  # noqa: S105 - a variable name
CONNECTIONS = 32
"""Keep-alive connections opened before the clock starts."""
MAX_CONNECTIONS = 1024
"""Past this many open connections a due request waits for a free one (still timed from
when it was due)."""
TICK = 0.001
"""The shortest sleep between requests: uvloop's timer step (a shorter sleep returned at
once, and the generator spun: ~11 sleeps a request at 1,000/s)."""
DRAIN = 30.0
"""Seconds the generator waits for the last answers after the last request was sent."""


@dataclass(frozen=True)
class Paced:
    """The outcome of the paced generator: latencies (s) of 2xx answers, from when each was
    due, and the split of each at the moment it was written (see the module docstring)."""

    rate: int
    offered: int
    seconds: float
    ok: int
    failed: int
    latencies: list[float]
    cpu_s: float
    send_lags: list[float] = field(default_factory=list)
    write_lags: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    connections: int = 0
    """Connections it opened in all (``CONNECTIONS`` of them before the clock)."""

    @property
    def offered_per_s(self) -> float:
        return self.offered / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def request_bytes(url: str, body: bytes, token: str) -> bytes:
    """The whole HTTP/1.1 request: a JSON ``POST`` of ``body`` to ``url`` with the bearer
    ``token`` (keep-alive, HTTP/1.1's default)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


@dataclass
class _Tally:
    ok: int = 0
    failed: int = 0
    connections: int = 0
    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    write_lags: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, gen: _Generator) -> None:
        import httptools

        self.gen = gen
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.due = 0.0
        self.written = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's is no subclass

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.due = due
        self.transport.write(self.gen.request)
        self.written = time.perf_counter()
        self.gen.tally.write_lags.append(self.written - due)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:  # a malformed answer: the request failed, the connection is dropped
            self._fail()
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:  # httptools' callback
        end = time.perf_counter()
        tally = self.gen.tally
        if 200 <= self.parser.get_status_code() < 300:
            tally.ok += 1
            tally.latencies.append(end - self.due)
            tally.answered.append(end - self.written)
        else:
            tally.failed += 1
        self.busy = False
        if self.parser.should_keep_alive():
            self.gen.release(self)
        else:
            self.gen.settle()
            if self.transport is not None:
                self.transport.close()

    def _fail(self) -> None:
        if self.busy:
            self.busy = False
            self.gen.tally.failed += 1
            self.gen.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail()
        self.gen.forget(self)


class _Generator:
    """The pacing loop, the connections and the tally of one run."""

    def __init__(self, url: str, request: bytes, rate: int, total: int) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.request = request
        self.rate = rate
        self.total = total
        self.tally = _Tally()
        self.idle: deque[_Connection] = deque()
        self.open: set[_Connection] = set()
        self.waiting: deque[float] = deque()
        """Due times of requests waiting for a connection (every one busy or opening)."""
        self.opening = 0
        self.opens: set[asyncio.Future[None]] = set()
        self.done = asyncio.Event()

    def pending(self) -> int:
        return self.total - self.tally.ok - self.tally.failed

    def settle(self) -> None:
        if self.pending() == 0:
            self.done.set()

    async def connect(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        self.opening += 1
        try:
            _t, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            return None
        finally:
            self.opening -= 1
        self.tally.connections += 1
        self.open.add(conn)
        return conn

    def release(self, conn: _Connection) -> None:
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)
            self.settle()

    def forget(self, conn: _Connection) -> None:
        self.open.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def submit(self, due: float) -> None:
        self.tally.send_lags.append(time.perf_counter() - due)
        if self.idle:
            self.idle.popleft().send(due)
            return
        self.waiting.append(due)
        if len(self.open) + self.opening < MAX_CONNECTIONS:
            task = asyncio.ensure_future(self._open_for_waiting())
            self.opens.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self.opens.discard)

    async def _open_for_waiting(self) -> None:
        conn = await self.connect()
        if conn is None:
            if self.waiting:
                self.waiting.popleft()
                self.tally.failed += 1
                self.settle()
            return
        self.release(conn)

    async def run(self) -> Paced:
        for conn in await asyncio.gather(*(self.connect() for _ in range(CONNECTIONS))):
            if conn is not None:
                self.idle.append(conn)
        if not self.idle:
            raise OSError(f"cannot connect to {self.host}:{self.port}")
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter() + 0.01
        period = 1.0 / self.rate
        i = 0
        while i < self.total:
            now = time.perf_counter()
            due = start + i * period
            while due <= now:
                self.submit(due)
                i += 1
                if i == self.total:
                    break
                due = start + i * period
            else:  # a shorter sleep than uvloop's timer step returns at once: spinning
                await asyncio.sleep(max(due - now, TICK))
        # the last request was due at (total - 1) / rate: the period it covers is total / rate
        seconds = max(time.perf_counter() - start, self.total / self.rate)
        try:
            await asyncio.wait_for(self.done.wait(), DRAIN)
        except TimeoutError:
            pass
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()
        t = self.tally
        return Paced(
            self.rate,
            self.total,
            seconds,
            t.ok,
            t.failed + self.pending(),  # never answered within DRAIN
            t.latencies,
            cpu,
            t.send_lags,
            t.write_lags,
            t.answered,
            t.connections,
        )


def generate(url: str, rate: int, seconds: float, body: bytes, token: str) -> Paced:
    """Offer ``rate`` POSTs of ``body`` per second for ``seconds`` in this process (see the
    module docstring); the cyclic garbage collector is off meanwhile."""
    import uvloop

    gen = _Generator(url, request_bytes(url, body, token), rate, int(rate * seconds))
    gc.collect()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(gen.run())
    finally:
        gc.enable()


def run_paced(url: str, rate: int, seconds: float, body_file: Path, token: str) -> Paced:
    """``generate`` in a process of its own; its result read back."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, url, str(rate), str(seconds), str(body_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + DRAIN + 60,
        env={**os.environ, TOKEN_ENV: token},
    )
    if done.returncode != 0:
        raise HeadraceError(
            f"bench gateway: the paced generator exited {done.returncode}: {done.stderr[-2000:]}"
        )
    data: dict[str, Any] = json.loads(done.stdout)
    return Paced(**data)


def main(argv: list[str]) -> int:
    url, rate, seconds, body_file = argv
    token = os.environ[TOKEN_ENV]
    result = generate(url, int(rate), float(seconds), Path(body_file).read_bytes(), token)
    json.dump(asdict(result), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
