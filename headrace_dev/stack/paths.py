"""Where the local stack keeps its files.

Two roots:
- the *stack dir* (default ``<project>/.stack``, ``$HEADRACE_STACK_DIR``): per-checkout state,
  data dirs, logs, pid files and the env file. Ignored by git; ``stack down`` keeps it, so data
  survives a restart; deleting it resets the stack.
- the *cache dir* (default ``~/.cache/headrace``, ``$HEADRACE_CACHE_DIR``): downloads and builds
  shared by every checkout on the machine (Kafka jars, the FerretDB binary), so a second
  ``stack up`` (or a fresh clone in CI) does not download or build again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StackPaths"]


@dataclass(frozen=True)
class StackPaths:
    """Resolved, absolute locations of the stack's files."""

    root: Path
    cache: Path

    @classmethod
    def from_env(cls, project_dir: Path | None = None) -> StackPaths:
        """Paths from ``$HEADRACE_STACK_DIR`` / ``$HEADRACE_CACHE_DIR`` or the defaults."""
        base = project_dir or Path.cwd()
        root = Path(os.environ.get("HEADRACE_STACK_DIR") or base / ".stack")
        cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache = Path(os.environ.get("HEADRACE_CACHE_DIR") or cache_home / "headrace")
        return cls(root=root.resolve(), cache=cache.resolve())

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        """Create the directories (idempotent)."""
        for d in (self.run, self.logs, self.data, self.conf, self.cache):
            d.mkdir(parents=True, exist_ok=True)
