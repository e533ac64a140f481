"""Where an S3 source stands, in a checkpoint whose size does not grow with the bucket.

Objects are listed in key order. The source reads the bucket in *sweeps*: a sweep lists every
key once (from the start, or after ``after`` when it resumes) and reads the objects that are
new or rewritten since the previous complete sweep. Instead of one ETag per object, the state
keeps times and a small set of digests:

- ``after``: every listed key up to and including this one is handled in the current sweep
  (a resumed sweep lists with ``StartAfter``); ``current``: the object being read
  (key, ETag, line), so a restart resumes inside it.
- ``start``: the sweep's start, the server's clock (the listing's ``Date`` header, rounded up).
  Objects written after it (``LastModified >= start``) are left to the next sweep.
- ``prev``: the start of the last complete sweep. An object last modified more than ``SLACK``
  before it existed when that sweep listed, so it was read then: it is skipped. Anything
  modified later is new or rewritten, and read - unless it is in ``prev_recent``.
- ``recent`` / ``prev_recent``: digests of (key, ETag) of the objects read in a sweep that
  were modified within ``SLACK`` of its start (S3 times have one-second precision). Only those
  need an ETag to tell "already read" from "rewritten", so the set holds what was written in
  about two seconds, not the bucket.
- ``finished``: objects read so far (for ``--reset``'s message).

With ``reingest_on_change: false`` a key is read once: the source only moves forward in key
order (``after`` never goes back), which suits buckets whose keys sort by time; an object
rewritten, or a new key sorting before the last one read, is not read. Turning reingest on
later makes the next sweep read every object again (those sweeps kept no times).

Old checkpoints (``{"done": {key: etag}, ...}``) are read: their map decides, exactly as
before, for the first sweep, after which it is dropped.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["SLACK", "S3State", "digest"]

#: Margin for S3's one-second timestamps (LastModified and the Date header are truncated).
SLACK = timedelta(seconds=2)


def digest(key: str, etag: str) -> str:
    """A short, collision-resistant token of one object version (72 bits, 12 characters)."""
    raw = hashlib.blake2b(f"{key}\0{etag}".encode(), digest_size=9).digest()
    return base64.urlsafe_b64encode(raw).decode()


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


@dataclass
class S3State:
    """The position of one S3 source (see the module docstring). ``reingest`` is the
    source's ``reingest_on_change``."""

    reingest: bool = True
    after: str | None = None
    start: datetime | None = None
    prev: datetime | None = None
    recent: set[str] = field(default_factory=set)
    prev_recent: set[str] = field(default_factory=set)
    current: dict[str, Any] | None = None
    finished: int = 0
    legacy: dict[str, str] | None = None

    # -- (de)serialization ----------------------------------------------------------------

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, *, reingest: bool = True) -> S3State:
        """The state in a checkpoint (None: nothing read yet); reads the old ``done`` map."""
        if not state:
            return cls(reingest)
        if "done" in state:  # the format before sweeps: one ETag per object
            done = dict(state.get("done") or {})
            return cls(reingest, current=state.get("current"), finished=len(done), legacy=done)
        return cls(
            reingest,
            after=state.get("after"),
            start=_time(state.get("start")),
            prev=_time(state.get("prev")),
            recent=set(state.get("recent") or ()),
            prev_recent=set(state.get("prev_recent") or ()),
            current=state.get("current"),
            finished=int(state.get("finished") or 0),
            legacy=dict(state["legacy"]) if state.get("legacy") else None,
        )

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy for a checkpoint."""
        out: dict[str, Any] = {
            "after": self.after,
            "start": _iso(self.start),
            "prev": _iso(self.prev),
            "recent": sorted(self.recent),
            "prev_recent": sorted(self.prev_recent),
            "current": dict(self.current) if self.current else None,
            "finished": self.finished,
        }
        if self.legacy is not None:
            out["legacy"] = dict(self.legacy)
        return out

    # -- sweeps ---------------------------------------------------------------------------

    def resume(self) -> str | None:
        """The key a pass lists after (None: from the first key): a new sweep with reingest
        starts from the first key, a resumed sweep and a sweep without reingest after
        ``after``."""
        if self.start is None and self.reingest:
            self.after = None
        return self.after

    def begin(self, server_now: datetime) -> None:
        """The pass's listing answered at the server time ``server_now``: a new sweep starts
        then (a resumed sweep keeps its start)."""
        if self.start is None:
            # the Date header is truncated to the second: the listing began before +1 s
            self.start = server_now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)

    def wanted(self, key: str, etag: str, modified: datetime | None) -> bool:
        """Whether this sweep reads the listed object (False: skip it, already read, or
        written after the sweep began and left to the next one)."""
        if self.legacy is not None and key in self.legacy:
            if self.legacy[key] == etag or not self.reingest:
                return False
        if not self.reingest:
            return True  # listed after ``after``: a new key
        if self.legacy is None and self.prev is not None:
            if digest(key, etag) in self.prev_recent:
                return False
            if modified is not None and modified < self.prev - SLACK:
                return False
        if modified is not None and self.start is not None and modified >= self.start:
            return False  # written after this sweep began: the next sweep reads it
        return True

    def passed(self, key: str) -> None:
        """Every listed key up to ``key`` is handled (read, skipped or failed)."""
        self.after = key
        self.current = None

    def read(self, key: str, etag: str, modified: datetime | None) -> None:
        """Object ``key`` was read to its end (its records are in the batch)."""
        self.finished += 1
        near_start = self.start is not None and (modified is None or modified >= self.start - SLACK)
        if self.reingest and near_start:
            self.recent.add(digest(key, etag))
        self.passed(key)

    def complete(self) -> None:
        """The listing is exhausted: the sweep is complete."""
        self.current = None
        self.legacy = None
        if self.reingest:
            self.prev, self.prev_recent = self.start, self.recent
        # ``after`` stays the high-water key: without reingest the next sweep lists after it
        self.start, self.recent = None, set()

    def describe(self) -> str:
        """One line for ``--reset``: what this state holds."""
        text = f"{self.finished} objects done"
        if self.current:
            text += f", inside {self.current['key']!r} at line {self.current['line']}"
        elif self.after is not None and self.start is not None:
            text += f", this pass up to {self.after!r}"  # a sweep in progress
        return text
