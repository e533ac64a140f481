"""Test helpers for stream stages on a real broker: a worker process and a topic reader.

Public so that users testing their own pipelines can use them too. Nothing here asserts
on time: waits have deadlines only so a broken run fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

__all__ = ["STORE_ENV", "TopicReader", "WorkerProcess", "free_port", "tail"]

STORE_ENV = "HEADRACE_TEST_STORE"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


class WorkerProcess:
    """``python -m headrace_cli.main worker -f FILE ...`` with its output appended to ``log``.

    ``module`` runs another entry point instead (one that wraps ``headrace_cli.main.main``,
    e.g. to inject a fault), ``env`` adds environment variables. Without ``--store`` in
    ``args``, ``$HEADRACE_TEST_STORE`` (e.g. ``memory://``) picks the table store when set,
    so a test suite can run every worker against the other store than the default."""

    def __init__(
        self,
        pipeline: Path,
        *,
        log: Path,
        cwd: Path,
        args: list[str] | None = None,
        module: str = "headrace_cli.main",
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = log
        self.web_port = free_port()
        if "--data-dir" not in (args or []):  # state next to the log, not in the cwd
            args = [*(args or []), "--data-dir", str(log.parent / "worker-data")]
        if "--store" not in (args or []) and os.environ.get(STORE_ENV):
            args = [*(args or []), "--store", os.environ[STORE_ENV]]
        argv = [
            sys.executable,
            "-m",
            module,
            "worker",
            "-f",
            str(pipeline),
            "--web-port",
            str(self.web_port),
            "--loglevel",
            "info",
            *(args or []),
        ]
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log, "ab") as out:
            out.write(f"\n===== start: {' '.join(argv)}\n".encode())
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def page(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET ``path`` (e.g. ``/readyz``) of the worker's web server: (status, JSON body);
        (0, {}) while nothing answers yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
                return int(r.status), json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return int(exc.code), json.loads(exc.read() or b"{}")
            except ValueError:  # not one of our pages' JSON (e.g. a server error page)
                return int(exc.code), {}
        except (OSError, ValueError):
            return 0, {}

    def kill9(self) -> None:
        """SIGKILL: no commit, no goodbye (a crash)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; the exit code, or None if it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None


class TopicReader:
    """Reads every partition of a topic from the beginning (no group offsets, no commits)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{topic}",
                "enable.auto.commit": False,
            }
        )
        meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
        self.partitions = sorted(meta.partitions)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.messages: list[Any] = []

    def poll(self, timeout: float = 0.5) -> int:
        got = self.consumer.consume(num_messages=10_000, timeout=timeout)
        for msg in got:
            if msg.error() is not None:
                raise RuntimeError(f"reading {self.topic}: {msg.error()}")
        self.messages.extend(got)
        return len(got)

    def read_to_end(self, deadline_s: float = 60.0) -> None:
        """Read up to the current end offsets."""
        ends = {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in self.partitions
        }
        stop = time.monotonic() + deadline_s
        while True:
            seen: dict[int, int] = {}
            for m in self.messages:
                seen[m.partition()] = max(seen.get(m.partition(), -1), m.offset())
            if all(seen.get(p, -1) >= end - 1 for p, end in ends.items()):
                return
            if time.monotonic() > stop:
                raise TimeoutError(f"could not read {self.topic} up to {ends}")
            self.poll()

    def latest(self) -> dict[bytes, bytes]:
        """The compacted view: last value per key, tombstones removed."""
        state: dict[bytes, bytes | None] = {}
        for m in self.messages:
            state[m.key()] = m.value()
        return {k: v for k, v in state.items() if v is not None}

    def wait_until(self, done: Callable[[TopicReader], bool], deadline_s: float) -> bool:
        stop = time.monotonic() + deadline_s
        while time.monotonic() < stop:
            self.poll()
            if done(self):
                return True
        return done(self)

    def close(self) -> None:
        self.consumer.close()
