"""The gateway bench's closed-loop load generator, ``wrk`` driven by a Lua script, and the
percentiles every figure uses (the paced, open-loop generator is ``gateway_paced``).

- ``lua_script(body, token)`` writes a wrk script that POSTs ``body`` as JSON with a bearer
  token and prints wrk's summary as one ``WRK_JSON {...}`` line; ``run_wrk`` runs it and
  ``parse_wrk`` reads that line into a ``WrkResult`` (with wrk's own CPU time, its rusage as
  a waited-for child). ``ensure_wrk`` installs the Debian package on first use.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headrace.errors import HeadraceError

__all__ = [
    "WrkResult",
    "ensure_wrk",
    "lua_script",
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


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; ``nan`` when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]
