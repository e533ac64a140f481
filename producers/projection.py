"""Which fields a JSONL source reads of each line, and how: ``Projection``.

An S3 JSONL source whose lines go out as read (JSON output, no schema) needs only the fields
of its key and its event time. ``Projection.values`` decodes just those with msgspec;
``Projection.encode`` hands whole chunks to the optional native reader
(``producers/native/``, ``_headrace_native``), which reads them with the GIL released and
answers only where it gives exactly the Python encoder's message parts.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

import msgspec

if TYPE_CHECKING:
    from producers.encoder import Encoded

__all__ = ["NATIVE_READER", "Projection"]

#: ``encode_lines(lines, key_field, time_field)`` of the native reader: (keys, times, total
#: length of the lines) or None.
NativeEncode = Callable[
    [list[bytes], str | None, str | None],
    tuple[list[bytes | None] | None, list[int | None] | None, int] | None,
]


def _native_reader() -> NativeEncode | None:
    """The native reader's ``encode_lines`` (``producers/native/``, built by ``make setup``
    when cargo is installed), or None without it or when the environment sets
    ``HEADRACE_NATIVE_READER=0``: the Python path gives the same records."""
    if os.environ.get("HEADRACE_NATIVE_READER", "1").strip() == "0":
        return None
    try:
        module = importlib.import_module("_headrace_native")
    except ImportError:
        return None
    return cast(NativeEncode, module.encode_lines)


_native_encode_lines = _native_reader()
#: Whether the native reader is installed (the benchmark's note says which reader ran).
NATIVE_READER = _native_encode_lines is not None


class Projection:
    """Decodes JSONL lines keeping only ``fields``: msgspec checks each line is one JSON
    object and builds only those fields (several times faster than a full ``orjson.loads``).
    For sources that send a line's own bytes as the value and read fields only for the key
    and the event time. Lines are checked to be UTF-8 as a whole; a line that is not a JSON
    object with every field is left to the caller (``values`` returns None).

    Given the record's ``key`` fields and ``time`` field (the source's ``key`` and
    ``timestamp_field``, for a plain JSON encoder), ``native`` tells whether the native reader
    (``_headrace_native``) is installed and can encode these records: then ``encode`` gives
    their message parts directly, parsed without the GIL, or None where the Python path must
    decide (it gives the same parts, see ``producers/native/src/lib.rs``)."""

    def __init__(
        self,
        fields: Sequence[str],
        *,
        key: Sequence[str] | None = None,
        time: str | None = None,
        native: bool = True,
    ) -> None:
        self.fields = tuple(dict.fromkeys(fields))
        # a TypedDict: msgspec builds the dict of these keys itself, skipping the rest
        projected = TypedDict("Projected", dict.fromkeys(self.fields, Any))  # type: ignore[misc]
        self._decoder = msgspec.json.Decoder(projected)
        self._key = key[0] if key else None
        self._time = time
        self.native = (
            native
            and _native_encode_lines is not None
            and len(key or ()) <= 1
            and set(self.fields) == {*(key or ()), *([time] if time else [])}
        )

    def encode(self, lines: list[bytes]) -> Encoded | None:
        """The message parts (keys, the lines as values, event times) of ``lines`` read by
        the native reader, or None when it declines any line (see ``native``)."""
        from producers.encoder import Encoded

        if _native_encode_lines is None:
            return None
        got = _native_encode_lines(lines, self._key, self._time)
        if got is None:
            return None
        keys, times, nbytes = got
        # a list of its own: the batch takes a chunk's ``raws`` and ``datas`` and extends each
        return Encoded(keys, list(lines), times, nbytes=nbytes)

    def values(self, lines: list[bytes]) -> list[dict[str, Any]] | None:
        """The projected values of ``lines`` (no blank line among them), or None."""
        buf = b"\n".join(lines)
        try:
            buf.decode()
            values = cast(list[dict[str, Any]], self._decoder.decode_lines(buf))
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
        if len(values) != len(lines):
            return None  # a blank line: let the caller number the lines
        return values
