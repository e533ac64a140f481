"""The contract every stack component (Kafka, MariaDB, FerretDB, moto, Prometheus) fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headrace_dev.stack.paths import StackPaths

__all__ = ["Component", "Log"]

Log = Callable[[str], None]


@dataclass
class Component(ABC):
    """One server of the local stack.

    Lifecycle, driven by :class:`headrace_dev.stack.stack.Stack`:
    ``missing_packages`` / ``install`` (idempotent, cached) → ``prepare`` (per data dir, once)
    → ``command`` started detached → ``healthy`` polled until True → ``bootstrap`` (idempotent).
    """

    paths: StackPaths
    port: int

    name: str = ""
    #: a word that appears in the process's command line, to recognise our pid
    marker: str = ""
    #: seconds to wait for the first healthy answer after a start
    start_timeout: float = 90.0

    def missing_packages(self) -> list[str]:
        """Debian packages this component needs that are not installed yet."""
        return []

    def install(self, log: Log) -> None:  # noqa: B027 - optional hook
        """Download or build what the component needs (cached; a no-op the second time)."""

    def prepare(self, log: Log) -> None:  # noqa: B027 - optional hook
        """Initialise the data dir and config files before a start (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def healthy(self) -> bool:
        """A real request to the server (metadata, SELECT 1, ping, list_buckets...) succeeded."""

    def bootstrap(self, log: Log) -> None:  # noqa: B027 - optional hook
        """Create users, databases etc. once the server answers (idempotent)."""

    @abstractmethod
    def endpoint(self) -> str:
        """The address clients use, e.g. ``127.0.0.1:9092`` or ``http://127.0.0.1:5000``."""

    def env(self) -> dict[str, str]:
        """Variables written to the stack's env file for tests, the demo and users."""
        return {}

    def outdated(self, argv: list[str]) -> str | None:
        """Why a running instance started with ``argv`` is not what this checkout would start
        (e.g. an older build), or None. ``stack up`` reports it; it never restarts by itself."""
        return None

    def cwd(self) -> Path | None:
        return None

    def process_env(self) -> dict[str, str]:
        return {}

    @property
    def data_dir(self) -> Path:
        return self.paths.data / self.name
