"""Starting, finding and stopping the stack's background processes by pid.

Each component runs in its own session (process group) so ``stop`` ends it with all of its
children. A pid file holds ``<pid> <marker>``; the marker (a word that must appear in the
process's command line) guards against a recycled pid: a pid whose command line lacks it is
treated as not ours, and never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "command_line",
    "exited",
    "is_alive",
    "port_in_use",
    "read_pid",
    "recorded_pid",
    "spawn",
    "stop",
    "wait_until",
]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def command_line(pid: int) -> list[str]:
    """The argv ``pid`` runs (empty if it is gone or exiting)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state is the first field after the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}


def is_alive(pid: int, marker: str = "") -> bool:
    """True if ``pid`` runs (not exiting, not a zombie) and its command line has ``marker``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _is_zombie(pid):
        return False
    cmdline = _cmdline(pid)
    # An empty command line means the process is exiting (its memory is already released).
    return bool(cmdline) and marker in cmdline


def exited(pid: int) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie). Ignores the command line, which
    is briefly empty while a freshly started program is still being set up."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return _is_zombie(pid)


def recorded_pid(pid_file: Path) -> int | None:
    """The pid written in ``pid_file`` (alive or not), or None when there is none."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process is still alive and ours, else None."""
    try:
        pid_s, _, marker = pid_file.read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if is_alive(pid, marker) else None


def spawn(
    cmd: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    marker: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``cmd`` detached (own session, stdin closed, output appended to ``log_file``)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid} {marker}\n")
    return proc.pid


def stop(pid_file: Path, *, timeout: float = 30.0) -> bool:
    """Stop the process group recorded in ``pid_file``: SIGTERM, then SIGKILL after ``timeout``.

    Returns True if a process was running. The pid file is removed in every case.
    """
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    marker = pid_file.read_text().strip().partition(" ")[2]
    _signal_group(pid, signal.SIGTERM)
    if not wait_until(lambda: not is_alive(pid, marker), timeout=timeout, interval=0.2):
        _signal_group(pid, signal.SIGKILL)
        wait_until(lambda: not is_alive(pid, marker), timeout=10, interval=0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    """Call ``check`` until it returns True (True) or ``timeout`` seconds pass (False).

    Exceptions raised by ``check`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: S110 - a failing probe only means "not ready yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
