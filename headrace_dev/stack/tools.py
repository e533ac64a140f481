"""Finding the machine's tools and installing Debian packages, with one-line causes and fixes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from headrace.errors import StackError

__all__ = ["apt_install", "require_tool", "run_logged"]

Log = Callable[[str], None]


def require_tool(name: str, why: str, fix: str) -> str:
    """Path of the executable ``name`` on PATH, or StackError naming ``why`` and ``fix``."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' not found on PATH (needed for {why}); fix: {fix}")
    return path


def run_logged(
    cmd: Sequence[str],
    *,
    log_file: Path,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> None:
    """Run ``cmd`` to completion with its output appended to ``log_file``.

    Raises StackError naming ``what``, the exit code and the log file when it fails.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {what}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            rc = subprocess.run(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=full_env,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{what} timed out after {timeout:.0f}s; see {log_file}") from exc
    if rc != 0:
        tail = _tail(log_file)
        raise StackError(f"{what} failed (exit {rc}); see {log_file}\n{tail}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  | " + line for line in text[-lines:])


_POLICY_RC = Path("/usr/sbin/policy-rc.d")


def apt_install(packages: Sequence[str], *, log_file: Path, log: Log) -> None:
    """Install Debian ``packages`` with apt-get, without letting their services start.

    The stack runs its own copies (own data dir, own port, 127.0.0.1 only), so a system
    service started by the package's postinst would only take the port. A temporary
    ``policy-rc.d`` that answers 101 ("action forbidden") keeps them stopped.
    """
    if not packages:
        return
    apt = require_tool(
        "apt-get",
        f"installing {', '.join(packages)}",
        f"install {', '.join(packages)} with your system's package manager",
    )
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = require_tool(
            "sudo",
            f"installing {', '.join(packages)} as a non-root user",
            f"run 'sudo apt-get install -y {' '.join(packages)}' yourself",
        )
        prefix = [sudo, "-n"]
    log(f"installing Debian packages: {', '.join(packages)} (first time only)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    created_policy = False
    if os.geteuid() == 0 and not _POLICY_RC.exists():
        _POLICY_RC.write_text(
            "#!/bin/sh\n# written by headrace stack up during apt-get install\nexit 101\n"
        )
        _POLICY_RC.chmod(0o755)
        created_policy = True
    try:
        run_logged([*prefix, apt, "update"], log_file=log_file, what="apt-get update", env=env)
        run_logged(
            [*prefix, apt, "install", "-y", "--no-install-recommends", *packages],
            log_file=log_file,
            what=f"apt-get install {' '.join(packages)}",
            env=env,
        )
    finally:
        if created_policy:
            _POLICY_RC.unlink(missing_ok=True)
