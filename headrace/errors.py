"""Error classes with meaning, shared by every headrace package.

- ``ConfigError``: bad configuration; the process stops at start with exit code 2,
  before anything is written anywhere.
- ``RetriableError``: a transient failure; the caller backs off ``retry_after`` seconds and retries.
- ``PoisonRecord``: one record cannot be processed; it goes to the dead-letter topic and the
  pipeline carries on.
- ``StackError``: the local stack could not be installed or started; the message names the
  component, the cause and the fix.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "ConfigError",
    "HeadraceError",
    "PoisonRecord",
    "RetriableError",
    "StackError",
]

EXIT_FAILURE = 1
EXIT_CONFIG = 2


class HeadraceError(Exception):
    """Base class of every error headrace raises on purpose."""

    exit_code: int = EXIT_FAILURE


class ConfigError(HeadraceError):
    """The pipeline file or the settings are invalid. Stops the process with exit code 2.

    ``path`` is the file (if any), ``key`` the dotted key path inside it (if known).
    ``str(err)`` is the full, user-facing message.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.message = message
        self.path = path
        self.key = key
        prefix = ""
        if path:
            prefix += f"{path}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message)


class RetriableError(HeadraceError):
    """A transient failure: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PoisonRecord(HeadraceError):
    """One record cannot be processed; it goes to the dead-letter topic, the pipeline continues."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class DeliveryError(HeadraceError):
    """The broker did not acknowledge a message (after the client's own retries): a source
    checkpoints nothing past it, a stage acks no input of its batch, a sink commits nothing
    of its batch; the process stops and its supervisor restarts it from the last commit."""


class WedgedError(HeadraceError):
    """A blocking client call did not return within its deadline: the process exits (code 1)
    instead of hanging while it reports healthy, so its supervisor restarts it."""


class StackError(HeadraceError):
    """The local stack could not be installed or started (message names cause and fix)."""
