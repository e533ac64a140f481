"""Supervising a pipeline's processes (``headrace run``): start, prefix logs, restart, stop.

Each :class:`ProcessSpec` is one long-lived process (a source, the worker, a sink). A process
that exits non-zero (or is killed by a signal we did not send) is restarted after an
exponential backoff (1 s, 2 s, 4 s ... capped at ``max_backoff``) and the restart is reported.
A process marked ``finite`` (a source run with ``--once``) that exits 0 is done and stays down.
``stop()`` sends SIGTERM to every process, waits ``grace`` seconds, then SIGKILLs the rest.

Each start passes ``HEADRACE_RESTARTS`` (how many times this process was restarted) and,
after the first exit, ``HEADRACE_LAST_EXIT`` (why the previous run ended: ``exit 1: <its
reason line>``, or ``killed by SIGKILL``): the process exports them
(``headrace_process_restarts``, ``headrace_last_exit``) so ``headrace status`` and alerts see
them. The reason line is the last line the process wrote that starts with ``headrace:`` or
``headrace <command>:`` (how a headrace process says why it stops), else its last line.

Threads: ``run()`` blocks in the caller's thread; one reader thread per process copies its
output to ``out`` with a ``[name]`` prefix.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

__all__ = ["ProcessSpec", "Supervisor", "exit_cause"]

#: how a headrace process says why it stops: "headrace: ..." or "headrace sink: ..."
_REASON = re.compile(r"^headrace(?: [a-z-]+)?: (?P<reason>.+)$")


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: ``name`` (log prefix), ``argv``, and whether exit 0 means done."""

    name: str
    argv: Sequence[str]
    finite: bool = False
    env: dict[str, str] | None = None
    #: started only once this returns True (checked every poll), e.g. "its input topic exists"
    ready: Callable[[], bool] | None = None


@dataclass
class _Proc:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    done: bool = False
    next_start: float = 0.0
    last_exit: int | None = None
    #: why the previous run ended (HEADRACE_LAST_EXIT), once it ended
    last_cause: str | None = None
    #: the last reason line (see the module doc) and the last line of the current run
    reason_line: str | None = None
    last_line: str | None = None
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Runs and watches a set of processes until ``until`` says so or ``stop()`` is called."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        out: IO[str],
        max_backoff: float = 30.0,
        grace: float = 30.0,
        restart: bool = True,
        describe: Callable[[list[int]], dict[int, str]] | None = None,
    ) -> None:
        self._procs = [_Proc(s) for s in specs]
        #: extra status text per running pid (e.g. rates and lag from its /metrics)
        self.describe = describe
        self._out = out
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.max_backoff = max_backoff
        self.grace = grace
        self.restart = restart
        self.failed: list[str] = []

    # -- output -----------------------------------------------------------------------------

    def say(self, line: str) -> None:
        with self._lock:
            self._out.write(line.rstrip("\n") + "\n")
            self._out.flush()

    def _pump(self, proc: _Proc, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.say(f"[{proc.spec.name}] {line}")
            if line.strip():
                proc.last_line = line.strip()
                if (found := _REASON.match(proc.last_line)) is not None:
                    proc.reason_line = found["reason"]
        stream.close()

    # -- lifecycle --------------------------------------------------------------------------

    def _start(self, proc: _Proc) -> None:
        env = dict(os.environ)
        env.update(proc.spec.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["HEADRACE_RESTARTS"] = str(proc.restarts)
        if proc.last_cause is not None:
            env["HEADRACE_LAST_EXIT"] = proc.last_cause
        else:
            env.pop("HEADRACE_LAST_EXIT", None)
        proc.reason_line = proc.last_line = None
        proc.popen = subprocess.Popen(
            list(proc.spec.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert proc.popen.stdout is not None
        reader = threading.Thread(target=self._pump, args=(proc, proc.popen.stdout), daemon=True)
        reader.start()
        proc.readers.append(reader)
        self.say(f"[run] started {proc.spec.name} (pid {proc.popen.pid})")

    def _check(self, proc: _Proc, now: float) -> None:
        if proc.done:
            return
        if proc.popen is None:
            if now >= proc.next_start and self._ready(proc):
                self._start(proc)
            return
        code = proc.popen.poll()
        if code is None:
            return
        for reader in proc.readers:  # the output up to the exit, for its reason line
            reader.join(timeout=1.0)
        proc.readers = [r for r in proc.readers if r.is_alive()]
        proc.last_exit = code
        proc.last_cause = exit_cause(code, proc.reason_line or proc.last_line)
        proc.popen = None
        if code == 0 and proc.spec.finite:
            proc.done = True
            self.say(f"[run] {proc.spec.name} finished")
            return
        if not self.restart:
            proc.done = True
            self.failed.append(proc.spec.name)
            self.say(f"[run] {proc.spec.name} exited with {code}; not restarting (--no-restart)")
            return
        delay = min(self.max_backoff, 2.0**proc.restarts)
        proc.restarts += 1
        proc.next_start = now + delay
        why = f" ({proc.reason_line})" if proc.reason_line else ""
        self.say(
            f"[run] {proc.spec.name} exited with {code}{why}; restart #{proc.restarts} in "
            f"{delay:.0f}s"
        )

    def _ready(self, proc: _Proc) -> bool:
        if proc.spec.ready is None:
            return True
        try:
            return proc.spec.ready()
        except Exception:
            return False

    def status(self) -> list[tuple[str, str, int | None, int]]:
        """(name, state, pid, restarts) per process; state is running, waiting or done."""
        rows: list[tuple[str, str, int | None, int]] = []
        for p in self._procs:
            if p.popen is not None:
                rows.append((p.spec.name, "running", p.popen.pid, p.restarts))
            else:
                rows.append((p.spec.name, "done" if p.done else "waiting", None, p.restarts))
        return rows

    def last_causes(self) -> dict[str, str]:
        """Process name -> why its last run ended (only processes that exited once)."""
        return {p.spec.name: p.last_cause for p in self._procs if p.last_cause is not None}

    def is_done(self, name: str) -> bool:
        """True when the finite process ``name`` has exited 0 (False for unknown names)."""
        return any(p.done and p.spec.finite for p in self._procs if p.spec.name == name)

    def finite_done(self) -> bool:
        """True when every finite process has exited 0."""
        return all(p.done for p in self._procs if p.spec.finite)

    def run(
        self, until: Callable[[], bool] | None = None, poll: float = 0.5, status_every: float = 30.0
    ) -> None:
        """Start everything and supervise until ``until()`` is true or ``stop()`` is called."""
        last_status = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            for proc in self._procs:
                self._check(proc, now)
            if until is not None and until():
                break
            if now - last_status >= status_every:
                last_status = now
                self._say_status()
            self._stopping.wait(poll)
        self.stop()

    def _say_status(self) -> None:
        rows = self.status()
        extra: dict[int, str] = {}
        if self.describe is not None:
            try:
                extra = self.describe([pid for _, _, pid, _ in rows if pid])
            except Exception as exc:  # status is best effort; never stop supervising for it
                self.say(f"[run] status details unavailable: {exc}")
        width = max(len(n) for n, *_ in rows)
        for n, s, pid, r in rows:
            pid_text = f" pid {pid}" if pid else ""
            more = f"; {extra[pid]}" if pid and pid in extra else ""
            self.say(f"[run] status {n.ljust(width)} {s}{pid_text}, {r} restart(s){more}")

    def request_stop(self) -> None:
        """Ask ``run()`` to return (safe from a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM every running process, wait ``grace`` seconds, SIGKILL what is left."""
        self._stopping.set()
        running = [p for p in self._procs if p.popen is not None and p.popen.poll() is None]
        for p in running:
            assert p.popen is not None
            _signal(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for p in running:
            assert p.popen is not None
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"[run] {p.spec.name} did not stop in {self.grace:.0f}s; killing it")
                _signal(p.popen.pid, signal.SIGKILL)
                p.popen.wait(10)
        for p in self._procs:
            for reader in p.readers:
                reader.join(timeout=2)


def exit_cause(code: int, line: str | None) -> str:
    """``HEADRACE_LAST_EXIT``'s text: ``exit 1: <line>``, ``killed by SIGKILL``, ``exit 0``
    (at most 300 characters)."""
    if code < 0:
        try:
            text = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            text = f"killed by signal {-code}"
    else:
        text = f"exit {code}"
    if line and code > 0:
        text += f": {line}"
    return text[:300]


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
