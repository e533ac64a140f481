"""What a source hands the runner: batches of records and poison, each with the checkpoint
state that is safe to store once every record of the batch (and of every earlier batch) is
acknowledged by the broker.

Source lifecycle (called from the runner's thread): ``restore(state)`` once before the first
pass with the last stored state (None: from the beginning); ``batches()`` for one pass, which
yields until the source is caught up (the runner may stop iterating early: closing the
generator must release every resource); ``close()`` once at the end.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas import Record

__all__ = ["Batch", "Poison", "Source"]


@dataclass(slots=True)
class Poison:
    """An input that cannot become a record (unparsable line, wrong CSV field count...)."""

    raw: bytes
    error_class: str
    message: str
    position: dict[str, Any]


@dataclass(slots=True)
class Batch:
    """Records in source order, the poison met among them, and the state after them.

    ``state`` must resume *after the last item of this batch*. ``units`` counts finished
    progress units (objects for S3, 0 for MySQL whose unit is the row).
    """

    records: list[Record]
    state: dict[str, Any]
    poison: list[Poison] = field(default_factory=list)
    units: int = 0


class Source(Protocol):
    """A polled source (see the module docstring for the lifecycle)."""

    name: str
    unit: str

    def restore(self, state: dict[str, Any] | None) -> None: ...

    def batches(self) -> Generator[Batch, None, None]: ...

    def close(self) -> None: ...
