"""Writing a batch's requests concurrently, for the sink writers.

A writer splits a batch into requests (chunks) that never touch the same key (the batch holds
each key once), so they may run at once. ``ChunkPool.run`` writes every chunk, each into its
own ``WriteOutcome``, waits for all of them, raises the first error in chunk order (the runner
then retries the whole batch: the chunks already written are written again, the same items),
and otherwise merges the outcomes. With one chunk, or ``concurrency`` 1, it runs inline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from connectors.records import WriteOutcome

__all__ = ["ChunkPool"]

C = TypeVar("C")


class ChunkPool:
    """Up to ``concurrency`` request threads, started on first use; ``close`` stops them."""

    def __init__(self, name: str, concurrency: int) -> None:
        self.name = name
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.concurrency, thread_name_prefix=f"sink-{self.name}"
            )
        return self._pool

    def run(
        self,
        write: Callable[[C, WriteOutcome], None],
        chunks: Sequence[C],
        outcome: WriteOutcome,
    ) -> None:
        """``write(chunk, its outcome)`` for every chunk (see the module docstring)."""
        if len(chunks) <= 1 or self.concurrency <= 1:
            for chunk in chunks:
                write(chunk, outcome)
            return
        parts = [WriteOutcome() for _ in chunks]
        futures = [
            self.executor().submit(write, chunk, part)
            for chunk, part in zip(chunks, parts, strict=True)
        ]
        errors = [f.exception() for f in futures]  # waits for every chunk
        for error in errors:
            if error is not None:
                raise error
        for part in parts:
            outcome.counts.update(part.counts)
            outcome.rejected.update(part.rejected)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
