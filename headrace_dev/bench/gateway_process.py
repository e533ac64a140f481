"""``headrace gateway`` processes for the gateway bench, and what they cost.

``GatewayProcesses(pipeline, log, secret, n)`` starts ``n`` copies of ``headrace gateway`` on
the pipeline file (whose ``gateway.processes`` is ``n``: they bind one port together), waits
until every one listens (``wait_ready``), reports their CPU seconds (``cpu``, summed from
``/proc/<pid>/stat``) and largest peak RSS (``peak_mb``), reads their histogram of the
broker's acknowledgements (``produce_buckets``: each process's own metrics port, named in
its listening line), and stops them (``stop``: SIGTERM, then SIGKILL after 30 s).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from headrace.errors import HeadraceError
from headrace_dev.bench.common import process_peak_rss_mb

__all__ = [
    "SECRET_ENV",
    "GatewayProcesses",
    "cpu_seconds",
    "free_port",
    "parse_buckets",
    "post",
]

SECRET_ENV = "HRBENCH_GATEWAY_SECRET"  # noqa: S105 - a variable name
"""The environment variable the bench's pipeline file reads the HS256 secret from."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


_METRICS_PORT = re.compile(r"listening on \S+ \(metrics port (\d+)\)")
_BUCKET = re.compile(r"^headrace_gateway_produce_seconds_bucket\{([^}]*)\} (\S+)$", re.M)


def parse_buckets(text: str, topic: str) -> dict[float, float]:
    """The cumulative counts of ``headrace_gateway_produce_seconds`` for ``topic`` in a
    Prometheus text page, by upper bound in seconds (``le``; ``+Inf`` is ``math.inf``)."""
    out: dict[float, float] = {}
    for labels, value in _BUCKET.findall(text):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("topic") == topic and "le" in pairs:
            out[float(pairs["le"])] = float(value)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcesses:
    """``processes`` copies of ``headrace gateway`` on one port (the file's ``processes``:
    they bind it together with SO_REUSEPORT), each logging to ``<log>.<n>``."""

    def __init__(self, pipeline: Path, log: Path, secret: str, processes: int) -> None:
        env = {**os.environ, SECRET_ENV: secret}
        self.logs = [log.with_suffix(f".{n}.log") for n in range(processes)]
        self._outs = [path.open("wb") for path in self.logs]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "headrace_cli.main", "-f", str(pipeline), "gateway"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            for out in self._outs
        ]

    def tail(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-1500:] for path in self.logs)

    def wait_ready(self, base: str, timeout: float = 60.0) -> None:
        """Until every process says it listens and ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise HeadraceError(
                        f"bench gateway: a gateway process exited {proc.returncode}: {self.tail()}"
                    )
            listening = all(
                "listening on" in path.read_text(errors="replace") for path in self.logs
            )
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310
                    if response.status == 200 and listening:
                        return
            time.sleep(0.2)
        raise HeadraceError(f"bench gateway: not ready within {timeout:.0f} s: {self.tail()}")

    def cpu(self) -> float:
        """CPU seconds of every gateway process so far."""
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def metrics_ports(self) -> list[int]:
        """Each process's own metrics port, from its listening line."""
        ports = []
        for path in self.logs:
            found = _METRICS_PORT.search(path.read_text(errors="replace"))
            if found:
                ports.append(int(found.group(1)))
        return ports

    def produce_buckets(self, topic: str) -> dict[float, float]:
        """The histogram of the broker's acknowledgements (from producing a request's records
        to the last one's report) summed over the processes; empty when a page is missing."""
        total: dict[float, float] = {}
        for port in self.metrics_ports():
            url = f"http://127.0.0.1:{port}/metrics"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
            except (OSError, urllib.error.URLError):
                return {}
            for le, count in parse_buckets(text, topic).items():
                total[le] = total.get(le, 0.0) + count
        return total

    def peak_mb(self) -> float:
        """The largest peak RSS of the gateway processes."""
        return max(process_peak_rss_mb(proc.pid) or 0.0 for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for out in self._outs:
            out.close()


def post(url: str, body: bytes, token: str) -> int:
    """POST ``body`` as JSON with the bearer ``token``; the answer's status."""
    request = urllib.request.Request(  # noqa: S310 - our own gateway on 127.0.0.1
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
