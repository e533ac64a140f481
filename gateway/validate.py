"""Posted records checked against their topic's declaration, and turned into Kafka messages.

A ``TopicValidator`` is built once per declared topic (``build_validators``: the schemas are
read at start, so a missing file stops the gateway with exit 2 before it listens). Its
``check`` splits a request's records into ``Message`` (key bytes, value bytes, timestamp)
and ``Rejection`` (the reason, safe to send to the client, and the bytes for the dead-letter
topic). A record is rejected, with a reason naming the record and the field, when:

- it is not a JSON object (or, in envelope form, not ``{"value": {...}, "key": ..., "time":
  ...}`` with an object as ``value``);
- a key field of the topic is missing;
- the topic's time field is missing, null or not a time (ISO-8601 text or epoch ms);
- it does not match the topic's JSON Schema, or its Avro schema (``format: avro``).

Keys: the topic's ``key`` fields when it declares some (``schemas.encode_key``, as sources
key their records, so a key lands on the partition Faust and Java pick); otherwise the
explicit key (the envelope's ``key``, or the request's ``?key=``); otherwise none. Values:
JSON (a JSONL line is kept as it was sent) or Confluent-framed Avro with the schema's id in
the pipeline's registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from gateway.bodies import Item
from headrace.config.problems import format_path
from headrace.errors import ConfigError
from schemas import AvroCodec, JsonCodec, SchemaMismatch, SchemaNotFound, encode_key, load_schema

try:
    from fastjsonschema import JsonSchemaException as _FastError
except ImportError:  # pragma: no cover - fastjsonschema is in the gateway extra
    _FastError = Exception  # type: ignore[assignment,misc]


if TYPE_CHECKING:
    from headrace.config import Pipeline
    from headrace.config.gateway import GatewayTopic

__all__ = [
    "MAX_REASON",
    "Message",
    "Rejection",
    "TopicValidator",
    "build_validators",
    "event_time_ms",
]

MAX_REASON = 300
_JSON = JsonCodec()
_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw]).decode

_Part = tuple[int, bytes | None, bytes | None, int]
"""An accepted record before its message: index, key, value bytes (None: to encode as
JSON with the request's others), timestamp."""


@dataclass(frozen=True, slots=True)
class Message:
    """One accepted record as a Kafka message; ``index`` is its place in the request."""

    index: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected record: why (``reason``), and what goes to the dead-letter topic."""

    index: int
    reason: str
    key: bytes | None
    value: bytes


class _Rejected(Exception):
    pass


def event_time_ms(value: Any) -> int:
    """Epoch milliseconds of an event time: ISO-8601 text (naive = UTC), a date, or a number
    of epoch milliseconds. ValueError when it is none of these."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        ms = int(value)
        if not -(2**63) <= ms < 2**63:
            raise ValueError(f"{value!r} ms is past the 64-bit range of a Kafka timestamp")
        return ms
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO-8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    raise ValueError(f"a {type(value).__name__} is not a time")


class TopicValidator:
    """Checks and encodes the records of one topic (see the module docstring). Stateless
    after construction; safe to call from the event loop for every request."""

    def __init__(
        self,
        topic: str,
        config: GatewayTopic,
        *,
        json_schema: Mapping[str, Any] | None = None,
        avro: AvroCodec | None = None,
    ) -> None:
        self.topic = topic
        self.config = config
        self.key_fields = tuple(config.key or ())
        self.time_field = config.time
        self._key1 = self.key_fields[0] if len(self.key_fields) == 1 else None
        self._avro = avro
        self._json_schema: Any = None
        self._fast: Any = None
        if json_schema is not None:
            from jsonschema import validators

            cls = validators.validator_for(json_schema)
            self._json_schema = cls(json_schema, format_checker=cls.FORMAT_CHECKER)
            self._fast = _compiled(json_schema)

    def check(
        self,
        items: Sequence[Item],
        *,
        now_ms: int,
        explicit_key: str | None = None,
        envelope: bool = False,
    ) -> tuple[list[Message], list[Rejection]]:
        """Split ``items`` into messages and rejections, both in request order.

        The values to write as JSON (a JSON body's records, an envelope's ``value``) are
        encoded together once every record was checked (``_encode_all``: one orjson call for
        the request instead of one per record, the same bytes)."""
        parts: list[_Part] = []
        values: list[Any] = []
        rejected: list[Rejection] = []
        one = self._one
        for item in items:
            try:
                parts.append(one(item, now_ms, explicit_key, envelope, values))
            except _Rejected as exc:
                reason = f"{item.where()}: {exc}"
                if len(reason) > MAX_REASON:
                    reason = reason[: MAX_REASON - 1] + "…"
                raw = item.raw if item.raw is not None else orjson.dumps(item.value)
                rejected.append(Rejection(item.index, reason, self._key_guess(item.value), raw))
        encoded = iter(_encode_all(values) if values else ())
        accepted = [Message(i, k, next(encoded) if d is None else d, t) for i, k, d, t in parts]
        return accepted, rejected

    def _one(
        self,
        item: Item,
        now_ms: int,
        explicit_key: str | None,
        envelope: bool,
        values: list[Any],
    ) -> _Part:
        """One accepted record's parts; its value bytes None when the value was appended to
        ``values`` (to encode as JSON with the others). ``_Rejected`` says why not."""
        value = item.value
        raw = item.raw
        time_value: Any = None
        has_time = False
        if envelope:
            if not isinstance(value, dict) or not isinstance(value.get("value"), dict):
                raise _Rejected(
                    'expected an envelope {"value": {...}, "key": ..., "time": ...} with a '
                    "JSON object as value"
                )
            unknown = sorted(set(value) - {"value", "key", "time"})
            if unknown:
                raise _Rejected(f"unknown envelope key(s) {', '.join(unknown)}")
            if value.get("key") is not None:
                explicit_key = _key_text(value["key"])
            has_time = "time" in value
            time_value = value.get("time")
            value = value["value"]
            raw = None
        elif not isinstance(value, dict):
            raise _Rejected(f"expected a JSON object, got {_json_type(value)}")
        if self._key1 is not None:  # one key field, its text (encode_key's result, quicker)
            try:
                one = value[self._key1]
            except KeyError:
                raise _Rejected(f"key field {self._key1!r} is missing") from None
            key: bytes | None = one.encode() if type(one) is str else encode_key((one,))
        elif self.key_fields:
            try:
                key = encode_key(tuple(value[f] for f in self.key_fields))
            except KeyError as exc:
                raise _Rejected(f"key field {exc.args[0]!r} is missing") from None
        else:
            key = None if explicit_key is None else explicit_key.encode()
        if self.time_field is not None:
            if self.time_field not in value:
                raise _Rejected(f"time field {self.time_field!r} is missing")
            timestamp = _time(value[self.time_field], f"time field {self.time_field!r}")
        elif has_time:
            timestamp = _time(time_value, "envelope time")
        else:
            timestamp = now_ms
        if self._json_schema is not None:
            fast = self._fast
            if fast is None:
                self._check_json_schema(value)
            else:
                try:
                    fast(value)
                except _FastError:
                    self._check_json_schema(value)
        if self._avro is not None:
            try:
                data = self._avro.encode(value)
            except SchemaMismatch as exc:
                raise _Rejected(str(exc)) from None
        elif raw is not None:
            data = raw
        else:
            values.append(value)
            return item.index, key, None, timestamp
        return item.index, key, data, timestamp

    def _check_json_schema(self, value: dict[str, Any]) -> None:
        """Reject ``value`` unless it matches the JSON Schema. A compiled validator
        (fastjsonschema, ~10x faster) decides first; jsonschema, the reference
        implementation, explains a failure (and has the last word if the two disagree)."""
        if self._fast is not None:
            try:
                self._fast(value)
                return
            except _FastError:
                pass
        from jsonschema.exceptions import best_match  # here: the import cost ~4 us a record

        error = best_match(self._json_schema.iter_errors(value))
        if error is None:
            return
        path = ".".join(str(p) for p in error.absolute_path)
        where = f"field {path!r}: " if path else ""
        raise _Rejected(f"does not match the topic's JSON Schema: {where}{error.message}")

    def _key_guess(self, value: Any) -> bytes | None:
        """The key of a rejected record when it can be read (for the dead letter), else None."""
        if not self.key_fields or not isinstance(value, dict):
            return None
        try:
            return encode_key(tuple(value[f] for f in self.key_fields))
        except KeyError:
            return None


def _compiled(schema: Mapping[str, Any]) -> Any:
    """fastjsonschema's compiled validator of ``schema``, or None when it cannot compile it
    (a draft or keyword it lacks): jsonschema alone then decides."""
    try:
        import fastjsonschema

        return fastjsonschema.compile(dict(schema))
    except Exception:  # any failure to compile: fall back, never stop the gateway
        return None


def _encode_all(values: list[Any]) -> list[bytes]:
    """``[JsonCodec().encode(v) for v in values]``, the same bytes, quicker: orjson writes
    the list in one call (a list is ``[`` + its items' own encodings joined by ``,`` +
    ``]``), and msgspec cuts it back into the items' bytes (``Raw``: the exact slices).
    One ``orjson.dumps`` per record cost ~1.6 us each (a fresh ~1 KiB buffer for every
    kept result), this ~0.2 us. A parsed body's values have only text keys and JSON
    types, which plain ``dumps`` writes as the codec does; anything else (``TypeError``,
    e.g. a nesting past orjson's depth limit once in a list) goes through the codec one
    value at a time, as before."""
    try:
        return [bytes(raw) for raw in _RAW_ITEMS(orjson.dumps(values))]
    except (TypeError, msgspec.DecodeError):
        return [_JSON.encode(v) for v in values]


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool | int | float):
        return encode_key((key,)).decode()
    raise _Rejected(f"an explicit key must be text or a number, got {_json_type(key)}")


def _time(value: Any, what: str) -> int:
    try:
        return event_time_ms(value)
    except ValueError as exc:
        raise _Rejected(f"{what}: {exc}") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def build_validators(pipeline: Pipeline) -> dict[str, TopicValidator]:
    """A validator for every topic under ``gateway.topics``; ``ConfigError`` (exit 2) names
    a schema file that is missing or invalid."""
    gateway = pipeline.gateway
    if gateway is None:
        raise ConfigError("the pipeline file has no gateway: section", path=_file(pipeline))
    out: dict[str, TopicValidator] = {}
    for name, topic in gateway.topics.items():
        key = format_path(["gateway", "topics", name, "schema"])
        if topic.format == "avro":
            assert isinstance(topic.schema_, str)  # the config model refuses anything else
            try:
                schema = load_schema(pipeline.schema_dir, topic.schema_)
            except SchemaNotFound as exc:
                raise ConfigError(str(exc), path=_file(pipeline), key=key) from None
            schema_id = pipeline.schema_registry().schema_id(topic.schema_, name, schema)
            out[name] = TopicValidator(name, topic, avro=AvroCodec(schema, schema_id))
        elif isinstance(topic.schema_, str):
            out[name] = TopicValidator(
                name, topic, json_schema=_json_schema_file(pipeline, topic.schema_, key)
            )
        else:
            out[name] = TopicValidator(name, topic, json_schema=topic.schema_)
    return out


def _json_schema_file(pipeline: Pipeline, text: str, key: str) -> dict[str, Any]:
    base = pipeline.file.parent if pipeline.file is not None else Path.cwd()
    path = base / text
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"JSON Schema file {path} cannot be read ({exc.strerror}); fix the path (relative "
            "to the pipeline file) or write the schema inline",
            path=_file(pipeline),
            key=key,
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"JSON Schema file {path} is not JSON: {exc}", path=_file(pipeline), key=key
        ) from None
    if not isinstance(schema, dict):
        raise ConfigError(
            f"JSON Schema file {path} must hold a JSON object", path=_file(pipeline), key=key
        )
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(
            f"{path} is not a valid JSON Schema: {exc.message}", path=_file(pipeline), key=key
        ) from None
    return schema


def _file(pipeline: Pipeline) -> str | None:
    return str(pipeline.file) if pipeline.file is not None else None
