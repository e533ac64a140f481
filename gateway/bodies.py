"""Request bodies: the records of one POST, as the ``Content-Type`` says they are written.

- ``application/json``: one JSON value, or a JSON array of values (one record each);
- ``application/x-ndjson``, ``application/jsonl``, ``application/json-lines`` (and
  ``application/x-jsonlines``): one JSON value per line, blank lines skipped.

``read_body`` reads at most ``max_body`` bytes and raises ``BodyTooLarge`` (413) past it,
before parsing anything. ``parse_records`` raises ``BodyError`` (400) when the body is not
JSON, naming the line and column (for JSONL: the line of the body and the column in it),
``UnsupportedMediaType`` (415) for any other content type. It never rejects a record for
its content: a value that is not an object is the validator's business (a per-record
rejection), so one bad record in a batch does not fail the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "JSONL_TYPES",
    "JSON_TYPES",
    "BodyError",
    "BodyTooLarge",
    "Item",
    "UnsupportedMediaType",
    "media_type",
    "parse_records",
    "read_body",
]

JSON_TYPES = frozenset({"application/json"})
JSONL_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/jsonl",
        "application/json-lines",
        "application/x-jsonlines",
    }
)


class BodyError(ValueError):
    """The body cannot be read as records (400); the message is safe to send to the client."""

    status = 400


class BodyTooLarge(BodyError):
    """The body is larger than ``max_body`` (413)."""

    status = 413


class UnsupportedMediaType(BodyError):
    """The ``Content-Type`` is neither JSON nor JSON lines (415)."""

    status = 415


@dataclass(frozen=True, slots=True)
class Item:
    """One posted record: its place in the request (``index`` from 0; ``line`` from 1 for
    JSONL, None for JSON), the parsed ``value`` (any JSON value) and its ``raw`` bytes when
    known (a JSONL line; None for JSON, where the caller re-encodes ``value``)."""

    index: int
    line: int | None
    value: Any
    raw: bytes | None = None

    def where(self) -> str:
        """``record 3`` or ``record 3 (line 4)``, for messages."""
        return f"record {self.index}" + (f" (line {self.line})" if self.line is not None else "")


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, lowercase, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


async def read_body(
    chunks: AsyncIterator[bytes], max_body: int, content_length: str | None = None
) -> bytes:
    """The whole body from ``chunks``; ``BodyTooLarge`` as soon as it is past ``max_body``
    bytes (a declared ``Content-Length`` past it is refused before reading anything)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > max_body:
        raise BodyTooLarge(_too_large(int(content_length), max_body))
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge(_too_large(size, max_body, at_least=True))
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, max_body: int, *, at_least: bool = False) -> str:
    more = "at least " if at_least else ""
    return (
        f"request body is {more}{size} bytes, over the gateway's max_body of {max_body} bytes; "
        "send fewer records per request"
    )


def parse_records(body: bytes, content_type: str | None) -> tuple[list[Item], bool]:
    """The records in ``body`` and whether the body was a single record (a JSON value that is
    not an array). Raises ``BodyError`` (see the module docstring)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return _json(body)
    if kind in JSONL_TYPES:
        return _jsonl(body), False
    raise UnsupportedMediaType(
        f"Content-Type {kind or '(none)'!r} is not supported; send application/json (one "
        "record or an array of records) or application/x-ndjson (one record per line)"
    )


def _json(body: bytes) -> tuple[list[Item], bool]:
    if not body.strip():
        raise BodyError("request body is empty; send a JSON record or an array of records")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(value, list):
        if not value:
            raise BodyError("the JSON array is empty; send at least one record")
        return [Item(i, None, v) for i, v in enumerate(value)], False
    return [Item(0, None, value)], True


def _jsonl(body: bytes) -> list[Item]:
    items: list[Item] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BodyError(
                f"malformed JSON at line {number} column {exc.colno}: {exc.msg}"
            ) from None
        items.append(Item(len(items), number, value, line.rstrip(b"\r")))
    if not items:
        raise BodyError("request body has no records; send one JSON record per line")
    return items
