"""Durations and byte sizes as written in the pipeline file.

Contract:

- A *duration* is a number of seconds (``5``, ``0.5``) or a number with one unit:
  ``ms``, ``s``, ``m``, ``h``, ``d`` (``500ms``, ``1s``, ``1.5m``, ``2h``). It parses to ``float``
  seconds. Negative values, booleans and anything else raise ``ValueError`` with a message that
  shows the accepted forms.
- A *byte size* is a whole number of bytes (``1048576``) or a number with a unit: ``B``,
  ``KB``, ``MB``, ``GB`` (powers of 1000) or ``KiB``, ``MiB``, ``GiB`` (powers of 1024).
  It parses to ``int``.

``Duration``/``PositiveDuration``/``ByteSize`` are the annotated types the config models use; their
validation errors carry the same messages.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from headrace.config.base import TypeLabel

__all__ = [
    "ByteSize",
    "Duration",
    "PositiveDuration",
    "format_duration",
    "parse_duration",
    "parse_size",
]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_HINT = "use seconds as a number or a number with a unit, e.g. 500ms, 1s, 1m, 2h"

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$")
_SIZE_HINT = "use bytes as a whole number or a number with a unit, e.g. 512KB, 4MB, 1MiB"


def parse_duration(value: object) -> float:
    """Parse a duration (see the module docstring) into float seconds.

    Raises ``ValueError`` naming the bad value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({_DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration ({_DURATION_HINT})")
        number, unit = match.groups()
        seconds = float(number) * _DURATION_UNITS[unit or "s"]
    else:
        raise ValueError(f"expected a duration ({_DURATION_HINT}), got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it must be zero or positive")
    return seconds


def parse_size(value: object) -> int:
    """Parse a byte size (see the module docstring) into whole bytes.

    Raises ``ValueError`` naming the bad value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a byte size ({_SIZE_HINT})")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        unit = (match.group(2) or "b").lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a byte size ({_SIZE_HINT})")
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"{value!r} is not a byte size ({_SIZE_HINT})")
    if size < 0:
        raise ValueError(f"{value!r} is not a byte size: it must be zero or positive")
    return size


def format_duration(seconds: float) -> str:
    """Render float seconds back in the file's notation (``0.5`` -> ``500ms``, ``60`` -> ``1m``)."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and (seconds / factor).is_integer():
            return f"{int(seconds / factor)}{unit}"
    millis = seconds * 1000
    if millis.is_integer():
        return f"{int(millis)}ms"
    return f"{seconds}s"


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("headrace", "{message}", {"message": str(exc)}) from None


def _positive_duration(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise PydanticCustomError(
            "headrace", "{message}", {"message": f"{value!r} must be a duration greater than 0"}
        )
    return seconds


def _size(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise PydanticCustomError("headrace", "{message}", {"message": str(exc)}) from None


_DURATION_SCHEMA = WithJsonSchema({"type": "string", "format": "duration"})

Duration = Annotated[float, BeforeValidator(_duration), _DURATION_SCHEMA, TypeLabel("duration")]
"""A duration >= 0 in float seconds (``500ms``, ``1s``, ``1m``, ``2h``, or a number of seconds)."""

PositiveDuration = Annotated[
    float, BeforeValidator(_positive_duration), _DURATION_SCHEMA, TypeLabel("duration")
]
"""A duration > 0 in float seconds."""

ByteSize = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema({"type": "string", "format": "byte-size"}),
    TypeLabel("byte size"),
]
"""A byte size in whole bytes (``4MB``, ``512KiB`` or a number)."""
