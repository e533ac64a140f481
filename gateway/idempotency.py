"""``Idempotency-Key``: a retried request gets the first request's answer again.

``IdempotencyStore`` maps a key (the gateway scopes it by client and topic) to the answer
of the first request that carried it. Contract:

- ``begin(key, fingerprint)`` returns a ``Claim``: either the stored ``Answer`` (replayed
  as it was), or ownership of the key (``claim.owner``): the caller runs the request and then
  calls ``finish`` (an answer to keep) or ``abandon`` (an answer not to keep: a 503, a 429, a
  crash), so a later retry runs again. A request arriving while the first is still in
  flight waits for it (in ``begin``) and gets its answer, or the ownership if it was
  abandoned.
- The same key with a different body (``fingerprint``) is refused: ``KeyReused``.
- Bounded: at most ``max_entries`` answers and ``max_bytes`` of answer bodies are kept;
  past either the oldest finished one is forgotten. Expiring: an answer is kept ``ttl``
  seconds after it finished.
- Per process, not shared between gateway processes (docs/gateway.md says what holds).

One instance belongs to one event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Answer", "Claim", "IdempotencyStore", "KeyReused"]


@dataclass(frozen=True)
class Answer:
    """A response as sent: status, headers and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


class KeyReused(Exception):
    """The key was used before for a request with a different body (422)."""


@dataclass
class _Entry:
    fingerprint: bytes
    done: asyncio.Future[Answer | None]
    finished_at: float | None = None
    size: int = 0


@dataclass
class Claim:
    """What ``begin`` returns: ``answer`` to replay, or ``owner`` True (run the request)."""

    key: str
    answer: Answer | None = None
    owner: bool = False
    _entry: _Entry | None = field(default=None, repr=False)


class IdempotencyStore:
    """Answers by idempotency key; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        ttl: float,
        max_entries: int,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries < 1 or max_bytes < 1:
            raise ValueError(
                f"ttl must be > 0, max_entries and max_bytes >= 1 (got {ttl}, {max_entries}, "
                f"{max_bytes})"
            )
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """Bytes of the answers kept now (bodies, headers and keys)."""
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._finished: deque[tuple[str, _Entry]] = deque()  # in the order they finished

    def __len__(self) -> int:
        return len(self._entries)

    async def begin(self, key: str, fingerprint: bytes) -> Claim:
        """The stored answer for ``key``, or ownership of it (see the module docstring);
        ``KeyReused`` when ``key`` was first used with another ``fingerprint``."""
        while True:
            self._expire()
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(fingerprint, asyncio.get_running_loop().create_future())
                self._entries[key] = entry
                self._bound()
                return Claim(key, owner=True, _entry=entry)
            if entry.fingerprint != fingerprint:
                raise KeyReused(
                    "this Idempotency-Key was used before with a different request body; "
                    "use a new key for a new request"
                )
            answer = await asyncio.shield(entry.done)
            if answer is not None:
                return Claim(key, answer=answer)
            # the first request was abandoned (and its entry removed): try to own the key

    def finish(self, claim: Claim, answer: Answer) -> None:
        """Keep ``answer`` for ``claim``'s key and hand it to the requests waiting on it."""
        entry = self._own(claim)
        entry.finished_at = self._clock()
        if not entry.done.done():
            entry.done.set_result(answer)
        if self._entries.get(claim.key) is entry:
            entry.size = _size(claim.key, answer)
            self.bytes += entry.size
            self._finished.append((claim.key, entry))
            self._bound()

    def abandon(self, claim: Claim) -> None:
        """Forget ``claim``'s key: waiting requests (and later retries) run again."""
        entry = self._own(claim)
        if self._entries.get(claim.key) is entry:
            self._drop(claim.key)
        if not entry.done.done():
            entry.done.set_result(None)

    def _own(self, claim: Claim) -> _Entry:
        if not claim.owner or claim._entry is None:
            raise ValueError(f"the claim on {claim.key!r} does not own the key")
        return claim._entry

    def _expire(self) -> None:
        now = self._clock()
        while self._finished:
            key, entry = self._finished[0]
            if self._entries.get(key) is not entry:  # evicted or replaced: drop the mark
                self._finished.popleft()
                continue
            assert entry.finished_at is not None
            if now - entry.finished_at < self.ttl:
                return
            self._finished.popleft()
            self._drop(key)

    def _drop(self, key: str) -> _Entry:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        return entry

    def _bound(self) -> None:
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            while (
                self._finished
                and self._entries.get(self._finished[0][0]) is not (self._finished[0][1])
            ):
                self._finished.popleft()
            if self._finished:
                key, _ = self._finished.popleft()
            elif len(self._entries) > self.max_entries:
                key = next(iter(self._entries))  # all in flight: the oldest goes, waiters rerun
            else:
                return
            entry = self._drop(key)
            if not entry.done.done():
                entry.done.set_result(None)


def _size(key: str, answer: Answer) -> int:
    """What keeping ``answer`` under ``key`` costs, roughly, in bytes."""
    headers = sum(len(k) + len(v) for k, v in answer.headers.items())
    return len(key) + len(answer.body) + headers + 200
