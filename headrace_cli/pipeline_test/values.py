"""How records look in a test file, and back: keys, event times, simulated times, values.

The test file speaks YAML; the stages speak Kafka messages. This module is the one place
that converts between them, both ways, so that what ``--update`` writes reads back as the
same record:

- a *key* is written as a list of field values (``[7, gold]``), one value (``7``), or null
  (no key). It becomes ``schemas.encode_key`` of the values, the bytes a headrace source or
  stage writes; read back, a JSON-array key shows as a list, any other as its text;
- an *event time* (the Kafka timestamp) is an ISO-8601 time (naive means UTC), a date, or
  epoch milliseconds; it is shown as ``2024-05-01T12:04:59.999Z``;
- a *simulated time* (``at``, ``advance``) is a duration from the start of the case
  (``0s``, ``1.5s``, ``10m``); it is shown the same way;
- a *value* is compared in its JSON form: what the YAML says is first encoded the way the
  stages encode (``schemas.JsonCodec``) and decoded again, so YAML and JSON spellings of the
  same value compare equal, and numbers that JSON carries as text (exact decimals) must be
  written as text, as the topic holds them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import yaml

from headrace.config.durations import format_duration
from schemas import JsonCodec, encode_key

__all__ = [
    "block",
    "decode_json",
    "duration_view",
    "encode_spec_key",
    "flow",
    "json_form",
    "key_view",
    "plain",
    "time_view",
]

_CODEC = JsonCodec()


def encode_spec_key(key: Any) -> bytes | None:
    """The Kafka key bytes of a key as a test file writes it (see the module doc)."""
    if key is None:
        return None
    if isinstance(key, list | tuple):
        return encode_key(list(key))
    return encode_key([key])


def key_view(key: bytes | None) -> Any:
    """A key as a test file writes it: a JSON array key as a list, else its text (None: no
    key). ``encode_spec_key(key_view(k)) == k`` for every key a headrace stage writes."""
    if key is None:
        return None
    text = key.decode("utf-8", errors="replace")
    if text.startswith("["):
        try:
            parts = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(parts, list):
            return parts
    return text


def time_view(ms: int) -> str:
    """Epoch milliseconds as ``2024-05-01T12:04:59.999Z`` (no fraction when whole seconds)."""
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def duration_view(ms: int) -> str:
    """Simulated milliseconds from the start of a case as a duration: ``0s``, ``500ms``,
    ``1.5s``, ``10m`` (whole units as ``headrace.config.durations.format_duration``)."""
    if ms % 1000 == 0 or ms < 1000:
        return format_duration(ms / 1000)
    return f"{Decimal(ms).scaleb(-3).normalize():f}s"


def json_form(value: Any) -> Any:
    """``value`` as a stage would see it after a JSON round trip (see the module doc).
    TypeError when it cannot be JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    return orjson.loads(_CODEC.encode({"v": value}))["v"]


def decode_json(data: bytes) -> tuple[Any, str | None]:
    """(the JSON value of ``data``, None), or (None, its text) when it is not JSON."""
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError:
        return None, data.decode("utf-8", errors="replace")


def plain(value: Any) -> Any:
    """``value`` with only YAML-safe types: Decimals as int or float, bytes as text, tuples
    as lists, mapping keys as text (what a sink operation may hold)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v) for v in items]
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < Decimal(2) ** 63:
            return int(value)
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class _FlowDumper(yaml.SafeDumper):
    """Safe YAML without aliases (a value repeated is written again, not as ``*id001``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def flow(value: Any) -> str:
    """``value`` as one line of flow-style YAML, the way the reports show records."""
    text: str = yaml.dump(
        value,
        Dumper=_FlowDumper,
        default_flow_style=True,
        sort_keys=False,
        width=math.inf,
        allow_unicode=True,
    )
    return text.strip().removesuffix("...").strip()


def _is_item(value: Any) -> bool:
    """Whether a mapping reads better as a block (a record, an operation) than on one line:
    it holds a collection, or more than three keys."""
    return isinstance(value, dict) and (
        len(value) > 3 or any(isinstance(v, dict | list) and v for v in value.values())
    )


def _block_lines(value: Any) -> list[str]:
    if isinstance(value, list) and value:
        lines: list[str] = []
        for item in value:
            sub = _block_lines(item) if _is_item(item) else [flow(item)]
            lines += [f"- {sub[0]}", *[f"  {line}" for line in sub[1:]]]
        return lines
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
                lines += [f"{flow(key)}:", *[f"  {line}" for line in _block_lines(item)]]
            else:
                lines.append(f"{flow(key)}: {flow(item)}")
        return lines
    return [flow(value)]


def block(value: Any, indent: int) -> str:
    """``value`` as block YAML, every line indented by ``indent`` spaces, no final newline:
    what ``--update`` writes. Lists of records are one record a block (each key on its
    line, its value on one line); short mappings (a timeline step) stay on one line."""
    pad = " " * indent
    return "\n".join(pad + line for line in _block_lines(value))
