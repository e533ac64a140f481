"""The gateway bench's load generators: ``wrk`` driven by a Lua script, and a paced,
open-loop generator for latency at a fixed rate.

- ``lua_script(body, token)`` writes a wrk script that POSTs ``body`` as JSON with a bearer
  token and prints wrk's summary as one ``WRK_JSON {...}`` line; ``run_wrk`` runs it and
  ``parse_wrk`` reads that line into a ``WrkResult`` (with wrk's own CPU time, its rusage as
  a waited-for child). ``ensure_wrk`` installs the Debian package on first use.
- ``paced(url, body, token, rate, seconds)`` sends request ``i`` at ``start + i / rate``
  whatever the answers (aiohttp on asyncio, with uvloop when installed) and times each from
  when it was due, so a stalled server shows in the percentiles (no coordinated omission); it
  reports its own CPU time and its own delay in starting each request.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headrace.errors import HeadraceError

__all__ = [
    "Paced",
    "WrkResult",
    "ensure_wrk",
    "lua_script",
    "paced",
    "parse_wrk",
    "percentile",
    "run_wrk",
]

_MARK = "WRK_JSON "


# -- wrk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """What ``wrk`` reported (its Lua ``done`` prints one JSON line) and what it cost."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        """Requests answered 2xx (wrk counts status >= 300 and socket errors apart)."""
        return max(0, self.requests - self.non_2xx)

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def lua_script(body: bytes, token: str) -> str:
    """A wrk script that POSTs ``body`` as JSON with the bearer ``token``, and prints its
    summary as one ``WRK_JSON {...}`` line when done."""
    text = body.decode("utf-8")
    level = 0  # a long bracket [=*[ ... ]=*] that the body (and its last "]") cannot close
    while f"]{'=' * level}]" in text + "]":
        level += 1
    eq = "=" * level
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = [{eq}[{text}]{eq}]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{_MARK}{{"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def parse_wrk(stdout: str, cpu_s: float = 0.0) -> WrkResult:
    """The ``WrkResult`` of a run of ``lua_script``'s script; ``ValueError`` naming what is
    missing when the output has no summary line (wrk failed: the output is in the message)."""
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            return WrkResult(
                requests=int(data["requests"]),
                seconds=int(data["duration_us"]) / 1e6,
                non_2xx=int(data["status"]),
                socket_errors=sum(int(data[k]) for k in ("connect", "read", "write", "timeout")),
                p50_ms=int(data["p50_us"]) / 1000,
                p99_ms=int(data["p99_us"]) / 1000,
                cpu_s=cpu_s,
            )
    raise ValueError(f"no {_MARK.strip()} summary line in wrk's output:\n{stdout[-2000:]}")


def ensure_wrk(log: Any = print) -> str:
    """The path of ``wrk``, installing the Debian package on first use (as the stack installs
    its packages: ``headrace_dev.stack.tools.apt_install``)."""
    found = shutil.which("wrk")
    if found:
        return found
    from headrace_dev.stack import StackPaths
    from headrace_dev.stack.tools import apt_install

    paths = StackPaths.from_env()
    log_file = paths.root / "logs" / "apt-wrk.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    apt_install(["wrk"], log_file=log_file, log=log)
    found = shutil.which("wrk")
    if not found:
        raise HeadraceError("bench gateway: wrk is not on PATH after apt-get install wrk")
    return found


def run_wrk(
    wrk: str, url: str, script: Path, *, connections: int, seconds: float, threads: int = 1
) -> WrkResult:
    """Run wrk; its own CPU time is its rusage as a waited-for child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise HeadraceError(f"bench gateway: wrk exited {done.returncode}: {done.stderr[-2000:]}")
    try:
        result = parse_wrk(done.stdout, cpu)
    except ValueError as exc:  # a Lua error is on stderr, and wrk still exits 0
        raise HeadraceError(f"bench gateway: {exc}\nwrk's stderr: {done.stderr[-2000:]}") from None
    if result.ok == 0:
        raise HeadraceError(
            f"bench gateway: none of wrk's {result.requests} requests got a 2xx answer "
            f"(check the script {script}); wrk's output:\n{done.stdout[-2000:]}"
        )
    return result


# -- the paced, open-loop generator ---------------------------------------------------------


@dataclass(frozen=True)
class Paced:
    """The outcome of ``paced``: latencies (s) of 2xx answers, from when each was due."""

    rate: int
    offered: int
    seconds: float
    ok: int
    failed: int
    latencies: list[float]
    cpu_s: float
    send_lags: list[float] = field(default_factory=list)
    """Seconds from when each request was due to when the generator began sending it: its
    own delay, which the latencies include."""
    write_lags: list[float] = field(default_factory=list)
    """Seconds from when each request was due to when its headers were written to the
    socket (aiohttp's trace: a connection taken from the pool or opened, then written):
    the generator's whole delay before the gateway could see the request."""
    answered: list[float] = field(default_factory=list)
    """Seconds from when each 2xx request's headers were written to the end of its answer:
    the gateway's part (plus the loopback and the generator reading the answer), without
    the generator's own delay."""

    @property
    def offered_per_s(self) -> float:
        return self.offered / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; ``nan`` when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


async def _paced(url: str, body: bytes, token: str, rate: int, seconds: float) -> Paced:
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    lags: list[float] = []
    write_lags: list[float] = []
    answered: list[float] = []
    failed = 0
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    trace = aiohttp.TraceConfig()

    async def headers_sent(_session: Any, context: Any, _params: Any) -> None:
        context.trace_request_ctx["written"] = time.perf_counter()

    trace.on_request_headers_sent.append(headers_sent)
    cpu0 = time.process_time()
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trace_configs=[trace]
    ) as session:

        async def one(due: float) -> None:
            nonlocal failed
            lags.append(time.perf_counter() - due)
            marks: dict[str, float] = {}
            try:
                async with session.post(
                    url, data=body, headers=headers, trace_request_ctx=marks
                ) as response:
                    await response.read()
                    end = time.perf_counter()
                    if 200 <= response.status < 300:
                        latencies.append(end - due)
                        if "written" in marks:
                            answered.append(end - marks["written"])
                    else:
                        failed += 1
            except (aiohttp.ClientError, TimeoutError):
                failed += 1
            if "written" in marks:
                write_lags.append(marks["written"] - due)

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        # the last request was due at (total - 1) / rate: the period it covers is total / rate
        sent = max(time.perf_counter() - start, total / rate)
        await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    return Paced(
        rate, total, sent, len(latencies), failed, latencies, cpu, lags, write_lags, answered
    )


def paced(url: str, body: bytes, token: str, rate: int, seconds: float) -> Paced:
    """Offer ``rate`` POSTs per second for ``seconds``, each when due, whatever the answers.

    The cyclic garbage collector is off meanwhile (what the run allocates is freed by
    reference counting), so none of its pauses delays a request."""
    gc.collect()
    gc.disable()
    try:
        try:  # uvloop (installed with uvicorn[standard]) halves the generator's own CPU cost
            import uvloop
        except ImportError:
            return asyncio.run(_paced(url, body, token, rate, seconds))
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_paced(url, body, token, rate, seconds))
    finally:
        gc.enable()
