"""The supervisor behind `headrace run`, with tiny real processes."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from headrace_cli.supervisor import ProcessSpec, Supervisor

PY = sys.executable


def test_finite_process_finishes_and_output_is_prefixed() -> None:
    out = io.StringIO()
    sup = Supervisor([ProcessSpec("src", [PY, "-c", "print('hello')"], finite=True)], out=out)
    sup.run(until=sup.finite_done, poll=0.05)
    text = out.getvalue()
    assert "[src] hello" in text
    assert "[run] src finished" in text
    assert sup.status() == [("src", "done", None, 0)]


def test_crashing_process_is_restarted_with_backoff(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    code = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(3 if n < 3 else 0)\n"
    )
    out = io.StringIO()
    sup = Supervisor(
        [ProcessSpec("flaky", [PY, "-c", code], finite=True)], out=out, max_backoff=0.2
    )
    deadline = time.monotonic() + 20
    sup.run(until=lambda: sup.finite_done() or time.monotonic() > deadline, poll=0.05)
    assert counter.read_text() == "3"
    text = out.getvalue()
    assert "exited with 3; restart #1" in text and "restart #2" in text
    assert "[run] flaky finished" in text


def test_no_restart_records_the_failure() -> None:
    out = io.StringIO()
    sup = Supervisor(
        [ProcessSpec("bad", [PY, "-c", "raise SystemExit(5)"])], out=out, restart=False
    )
    deadline = time.monotonic() + 10
    sup.run(until=lambda: bool(sup.failed) or time.monotonic() > deadline, poll=0.05)
    assert sup.failed == ["bad"]


def test_stop_terminates_long_running_processes() -> None:
    out = io.StringIO()
    sleeper = [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    sup = Supervisor([ProcessSpec("a", sleeper), ProcessSpec("b", sleeper)], out=out, grace=5)
    started = time.monotonic()
    sup.run(
        until=lambda: out.getvalue().count("] up") >= 2 or time.monotonic() - started > 15,
        poll=0.05,
    )
    assert time.monotonic() - started < 20
    assert out.getvalue().count("] up") == 2
    for p in sup._procs:
        assert p.popen is None or p.popen.poll() is not None


def test_periodic_status_is_one_line_per_process() -> None:
    out = io.StringIO()
    specs = [
        ProcessSpec("worker", [PY, "-c", "import time; time.sleep(5)"]),
        ProcessSpec("produce:src", [PY, "-c", "pass"], finite=True),
    ]
    sup = Supervisor(specs, out=out, grace=2, describe=lambda pids: {p: "lag 7" for p in pids})
    stop_at = time.monotonic() + 10  # a loaded machine: wait for the first status round

    def until() -> bool:
        return "; lag 7" in out.getvalue() or time.monotonic() > stop_at

    sup.run(until=until, poll=0.1, status_every=1.0)
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("[run] status ")]
    assert any(
        ln.startswith("[run] status worker ") and "running pid" in ln and ln.endswith("; lag 7")
        for ln in lines
    )
    assert any(ln.startswith("[run] status produce:src ") for ln in lines)


def test_restarts_and_the_last_exit_cause_are_passed_to_the_next_start(tmp_path: Path) -> None:
    """Issue #19: a restarted process knows how often it was restarted and why its last run
    ended (its last "headrace ...:" line), to export them as metrics."""
    seen = tmp_path / "seen"
    code = (
        "import os, sys\n"
        f"with open({str(seen)!r}, 'a') as f:\n"
        "    f.write(os.environ['HEADRACE_RESTARTS'] + '|' "
        "+ os.environ.get('HEADRACE_LAST_EXIT', '-') + '\\n')\n"
        "n = int(os.environ['HEADRACE_RESTARTS'])\n"
        "if n == 0:\n"
        "    print('headrace: sink s: no batch committed for 300 s while 4 records are pending "
        "on t[0]; exiting so the supervisor restarts it')\n"
        "    print('some log line after it')\n"
        "    sys.exit(1)\n"
        "if n == 1:\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    out = io.StringIO()
    sup = Supervisor(
        [ProcessSpec("sink:s", [PY, "-c", code], finite=True)], out=out, max_backoff=0.1
    )
    deadline = time.monotonic() + 20
    sup.run(until=lambda: sup.finite_done() or time.monotonic() > deadline, poll=0.05)
    assert seen.read_text().splitlines() == [
        "0|-",
        "1|exit 1: sink s: no batch committed for 300 s while 4 records are pending on t[0]; "
        "exiting so the supervisor restarts it",
        "2|killed by SIGKILL",
    ]
    assert "exited with 1 (sink s: no batch committed" in out.getvalue()
    assert sup.last_causes() == {"sink:s": "exit 0"}
