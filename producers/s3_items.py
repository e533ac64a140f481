"""What the S3 object parsers (``s3_formats``, ``s3_csvjson``) hand on: ``Chunk``s of records
and poison, and the one dead letter that ends an object whose bytes cannot be read further
(``unreadable``)."""

from __future__ import annotations

import csv
import gzip
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ijson

from producers.batch import Poison
from producers.s3_gzip import INFLATE_ERRORS

if TYPE_CHECKING:
    from producers.encoder import Encoded

__all__ = ["BAD_CONTENT", "BOM", "CHUNK", "Chunk", "position", "unreadable"]

#: Items per chunk (records and poison) of the Python readers.
CHUNK = 2000
#: The UTF-8 byte order mark: ignored at the start of a text body (RFC 8259 allows it).
BOM = b"\xef\xbb\xbf"

#: The object's bytes themselves are bad (not gzip, truncated, corrupt, not UTF-8 CSV, broken
#: CSV quoting, broken JSON inside a streamed array).
BAD_CONTENT = (
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    *INFLATE_ERRORS,
    UnicodeDecodeError,
    csv.Error,
    ijson.JSONError,
)


@dataclass(slots=True)
class Chunk:
    """Consecutive items of one object: records in columns (``values``, their source
    ``raws`` or None, their positions ``lines``) and the ``poison`` among them; ``last`` is the
    position of the chunk's last item, record or poison. ``encoded``: the records' Kafka
    message parts once a reader encoded them (see ``S3ObjectSource``), aligned with
    ``values``. A chunk read by a native projection comes encoded, and its ``values`` are
    empty placeholders (only the message parts are sent)."""

    values: list[dict[str, Any]] = field(default_factory=list)
    raws: list[bytes] | None = None
    lines: list[int] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    last: int = 0
    encoded: Encoded | None = None

    def __len__(self) -> int:
        return len(self.values) + len(self.poison)


def position(key: str, etag: str, n: int, offset: int | None = None) -> dict[str, Any]:
    """An item's source position: object ``key``/``etag``, item ``n`` and, for the end of
    an unreadable object, the decoded byte ``offset`` of its first unreadable byte."""
    if offset is None:
        return {"key": key, "etag": etag, "line": n}
    return {"key": key, "etag": etag, "line": n, "offset": offset}


def unreadable(
    exc: BaseException,
    key: str,
    etag: str,
    n: int,
    *,
    item: str,
    offset: int | None,
    partial: bytes | None = None,
) -> Chunk:
    """The chunk of the one dead letter that ends an object at its item ``n`` (a ``line``,
    ``row`` or ``element``, the first not read whole): ``exc`` says why; ``offset`` is the
    decoded byte where reading stopped (None: the parser does not say) and ``partial`` the
    decoded bytes of item ``n`` before it, the letter's value (None: the parser keeps none,
    the value is empty)."""
    where = f"from decoded byte {offset}" if offset is not None else "here"
    cause = f"{type(exc).__name__}: {str(exc)[:300]}"
    value = (
        f"this letter's value holds the {len(partial)} decoded bytes of {item} {n}"
        if partial is not None
        else "the parser keeps no bytes of it"
    )
    message = (
        f"{item} {n}: the object is unreadable {where} ({cause}); the items before it were "
        f"read, and {value}. Fix the object and upload it again: under a new ETag it is read "
        "again from its first item"
    )
    poison = Poison(partial or b"", type(exc).__name__, message, position(key, etag, n, offset))
    return Chunk(poison=[poison], last=n)
