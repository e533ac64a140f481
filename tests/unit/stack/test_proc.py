"""Process management of the stack: spawn detached, recognise our pid, stop the whole group."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from headrace_dev.stack import proc


def _sleeper(tmp_path: Path, marker: str = "headrace-test-sleeper") -> tuple[Path, int]:
    pid_file = tmp_path / "run" / "sleeper.pid"
    code = f"import time  # {marker}\ntime.sleep(60)"
    pid = proc.spawn(
        [sys.executable, "-c", code],
        pid_file=pid_file,
        log_file=tmp_path / "logs" / "sleeper.log",
        marker=marker,
    )
    return pid_file, pid


def test_spawn_records_pid_and_stop_ends_it(tmp_path: Path) -> None:
    pid_file, pid = _sleeper(tmp_path)
    deadline = time.monotonic() + 10  # right after fork, before exec, the command line is empty
    while proc.read_pid(pid_file) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.read_pid(pid_file) == pid
    assert proc.stop(pid_file, timeout=5) is True
    assert not proc.is_alive(pid)
    assert not pid_file.exists()
    assert proc.stop(pid_file) is False  # stopping twice is harmless


def test_a_pid_without_our_marker_is_not_ours(tmp_path: Path) -> None:
    pid_file, pid = _sleeper(tmp_path)
    try:
        pid_file.write_text(f"{pid} some-other-program\n")
        assert proc.read_pid(pid_file) is None  # never signalled as ours
        assert proc.stop(pid_file) is False
        assert proc.is_alive(pid)
    finally:
        pid_file.write_text(f"{pid} headrace-test-sleeper\n")
        proc.stop(pid_file, timeout=5)


def test_stale_or_garbage_pid_files_read_as_not_running(tmp_path: Path) -> None:
    f = tmp_path / "x.pid"
    f.write_text("not-a-pid\n")
    assert proc.read_pid(f) is None
    f.write_text("999999999 marker\n")
    assert proc.read_pid(f) is None
    assert proc.read_pid(tmp_path / "missing.pid") is None


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert proc.port_in_use(port)
    assert not proc.port_in_use(port)


def test_wait_until_treats_exceptions_as_not_yet() -> None:
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return True

    assert proc.wait_until(flaky, timeout=5, interval=0.01)
    assert not proc.wait_until(lambda: False, timeout=0.05, interval=0.01)


def test_exited_and_recorded_pid(tmp_path: Path) -> None:
    pid_file, pid = _sleeper(tmp_path)
    assert proc.recorded_pid(pid_file) == pid
    assert not proc.exited(pid)
    proc.stop(pid_file, timeout=5)
    assert proc.wait_until(lambda: proc.exited(pid), timeout=5, interval=0.05)
    assert proc.recorded_pid(pid_file) is None  # stop removed the file
    assert proc.recorded_pid(tmp_path / "nothing.pid") is None
