"""The faults the chaos runner injects, and how each one is undone.

A fault acts either on a server of the local stack (``kafka``, ``mariadb``, ``ferretdb``,
``moto``; found by the stack's pid files) or on a process of the running pipeline (found by
the ``[run] started NAME (pid N)`` lines of ``headrace run``). ``Injector.inject`` blocks for
the whole fault and returns when it is *cleared*: the server answers its health check again,
or the signal was delivered to the pipeline process (its supervisor restarts it).

Kinds:

- ``restart``: SIGTERM the server's process group, keep it down ``seconds``, start it again;
- ``kill``: the same with SIGKILL (no clean shutdown: Kafka recovers its logs);
- ``pause``: SIGSTOP the server for ``seconds`` then SIGCONT: clients time out instead of
  being refused, the nastier case;
- ``slow``: the server answers ``delay`` seconds late on every reply for ``seconds``
  (FerretDB only, through the round's ``SlowProxy``): a slow sink, back-pressure;
- ``kill9`` / ``term``: SIGKILL or SIGTERM one pipeline process whose name starts with the
  target (``worker``, ``sink:``, ``produce:``), chosen at random;
- ``kill9-again``: SIGKILL the process, then SIGKILL its replacement a few seconds after the
  supervisor started it (mid-recovery: the worker restoring its tables).

moto keeps S3 and DynamoDB in memory, so restarting it loses the data the sources read and the
sinks wrote (the emulator's limit, not the pipeline's): moto is only paused.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from headrace_dev.chaos.proxy import SlowProxy
from headrace_dev.stack import Stack, proc

__all__ = ["Episode", "Fault", "Injector"]

SERVER_KINDS = ("restart", "kill", "pause", "slow")
PROCESS_KINDS = ("kill9", "term", "kill9-again")
SERVERS = ("kafka", "mariadb", "ferretdb", "moto")


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` (see the module doc), ``target`` and how long it lasts."""

    kind: str
    target: str
    seconds: float = 0.0
    #: ``slow``: seconds added to every reply of the server
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind in SERVER_KINDS:
            if self.target not in SERVERS:
                raise ValueError(f"fault {self.kind}: unknown server {self.target!r} ({SERVERS})")
            if self.target == "moto" and self.kind != "pause":
                raise ValueError("moto keeps its data in memory: it can only be paused")
            if self.kind == "slow" and (self.target != "ferretdb" or self.delay <= 0):
                raise ValueError("slow: only ferretdb (through the proxy), with a delay > 0")
        elif self.kind not in PROCESS_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: {SERVER_KINDS + PROCESS_KINDS}")

    @property
    def name(self) -> str:
        """A stable label for the results table, e.g. ``kafka paused 30s``."""
        if self.kind == "pause":
            return f"{self.target} paused {self.seconds:.0f}s"
        if self.kind == "slow":
            return f"{self.target} slow {self.seconds:.0f}s (+{self.delay * 1000:.0f} ms a reply)"
        if self.kind in ("restart", "kill"):
            how = "SIGTERM" if self.kind == "restart" else "SIGKILL"
            return f"{self.target} {how} + restart"
        signal_name = {"kill9": "kill -9", "term": "SIGTERM", "kill9-again": "kill -9 mid-recovery"}
        return f"{self.target.rstrip(':')} {signal_name[self.kind]}"

    @property
    def on_server(self) -> bool:
        return self.kind in SERVER_KINDS

    @property
    def early(self) -> bool:
        """True for faults that matter only while the sources read (MariaDB, a source
        process): a round injects them as soon as its MySQL sources start."""
        return self.target == "mariadb" or self.target.startswith("produce:")


@dataclass
class Episode:
    """What happened to one injected fault (times are ``time.time()`` seconds)."""

    fault: Fault
    victim: str
    started: float
    cleared: float
    recovered: float | None = None
    screenshot: str | None = None
    #: how the recovery was judged when not by progress seen in Kafka
    note: str | None = None

    @property
    def recovery_seconds(self) -> float | None:
        """Seconds from the fault's start until the pipeline progressed again."""
        return None if self.recovered is None else self.recovered - self.started


class Injector:
    """Injects faults into ``stack`` and into the pipeline processes ``pids()`` names."""

    def __init__(
        self,
        stack: Stack,
        pids: Callable[[], Mapping[str, int]],
        *,
        rng: random.Random,
        say: Callable[[str], None] = print,
        proxy: SlowProxy | None = None,
        running: Callable[[], bool] = lambda: True,
    ) -> None:
        self.stack = stack
        self.proxy = proxy
        #: whether the pipeline run is still going (a restart can still come)
        self.running = running
        self.pids = pids
        self.rng = rng
        self.say = say
        self._paused: set[int] = set()
        #: seconds to wait for a process of the fault's name to run
        self.process_wait = 60.0

    def inject(self, fault: Fault) -> Episode:
        """Inject ``fault`` and undo it; return when it is cleared (see the module doc)."""
        started = time.time()
        if fault.on_server:
            victim = fault.target
            self._server(fault)
        else:
            victim = self._process(fault)
        return Episode(fault, victim, started, time.time())

    def release(self) -> None:
        """Resume every server this injector paused (call in a ``finally``)."""
        for pid in list(self._paused):
            _signal_group(pid, signal.SIGCONT)
            self._paused.discard(pid)

    def _server_pid(self, name: str) -> int:
        pid = proc.read_pid(self.stack.paths.pid_file(name))
        if pid is None:
            raise RuntimeError(
                f"chaos: stack server {name!r} is not running; fix: run headrace stack up"
            )
        return pid

    def _server(self, fault: Fault) -> None:
        if fault.kind == "slow":
            if self.proxy is None:
                raise RuntimeError("chaos: a slow fault needs the round's proxy")
            self.say(f"chaos: {fault.target} answers {fault.delay * 1000:.0f} ms late")
            self.proxy.delay = fault.delay
            try:
                time.sleep(fault.seconds)
            finally:
                self.proxy.delay = 0.0
            return
        pid = self._server_pid(fault.target)
        if fault.kind == "pause":
            self.say(f"chaos: pausing {fault.target} (pid {pid}) for {fault.seconds:.0f}s")
            self._paused.add(pid)
            _signal_group(pid, signal.SIGSTOP)
            try:
                time.sleep(fault.seconds)
            finally:
                _signal_group(pid, signal.SIGCONT)
                self._paused.discard(pid)
            return
        if fault.kind == "restart":
            self.say(f"chaos: stopping {fault.target} (SIGTERM, pid {pid})")
            self.stack.down([fault.target])
        else:
            self.say(f"chaos: killing {fault.target} (SIGKILL, pid {pid})")
            _signal_group(pid, signal.SIGKILL)
            proc.wait_until(lambda: not proc.is_alive(pid), timeout=30, interval=0.1)
        time.sleep(fault.seconds)
        self.say(f"chaos: starting {fault.target} again")
        self.stack.up([fault.target])

    def _process(self, fault: Fault) -> str:
        """Signal a running process named ``fault.target``*; LookupError when none runs
        within ``process_wait`` seconds (e.g. the sources have finished)."""
        deadline = time.monotonic() + self.process_wait
        while True:
            running = {n: p for n, p in self.pids().items() if n.startswith(fault.target)}
            alive = {n: p for n, p in running.items() if not proc.exited(p)}
            if alive:
                break
            if time.monotonic() > deadline:
                raise LookupError(f"chaos: no running pipeline process named {fault.target}*")
            time.sleep(0.5)
        name = self.rng.choice(sorted(alive))
        sig = signal.SIGTERM if fault.kind == "term" else signal.SIGKILL
        self.say(f"chaos: {sig.name} to {name} (pid {alive[name]})")
        _kill(alive[name], sig)
        if fault.kind == "kill9-again":
            first = alive[name]
            deadline = time.monotonic() + 120
            while self.pids().get(name, first) == first and time.monotonic() < deadline:
                if not self.running():  # the run ended (went idle): nothing restarts it
                    return name
                time.sleep(0.2)
            again = self.pids().get(name, first)
            if again != first:
                time.sleep(self.rng.uniform(2.0, 5.0))
                self.say(f"chaos: SIGKILL to {name} again, mid-recovery (pid {again})")
                _kill(again, signal.SIGKILL)
        return name


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
