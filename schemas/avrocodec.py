"""Avro on the wire: fastavro schemaless bodies in the Confluent framing.

A message is ``b"\\x00"`` (magic) + the schema id as 4 bytes big-endian + the schemaless Avro
body, so any Confluent-compatible consumer (Kafka Connect, kcat -s avro) can read it.
A value that does not match the schema raises :class:`SchemaMismatch` naming the field and
the reason; the caller sends such a record to the dead-letter topic.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

__all__ = ["MAGIC", "AvroCodec", "AvroDecoder", "SchemaMismatch", "split_wire"]

MAGIC = 0
_HEADER = struct.Struct(">bI")


class SchemaMismatch(ValueError):
    """A value does not match its Avro schema; ``field`` names the offending field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


def split_wire(data: bytes) -> tuple[int, bytes]:
    """(schema id, Avro body) of a Confluent-framed message; SchemaMismatch if not framed."""
    if len(data) < _HEADER.size or data[0] != MAGIC:
        raise SchemaMismatch("not a Confluent-framed Avro message (magic byte 0 missing)")
    _, schema_id = _HEADER.unpack_from(data)
    return schema_id, data[_HEADER.size :]


def _coercers(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Per top-level field, a function turning JSON-ish text into its logical type."""
    out: dict[str, Any] = {}
    for f in schema.get("fields", []):
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for t in types:
            if not isinstance(t, dict):
                continue
            logical = t.get("logicalType")
            if logical == "decimal":
                out[f["name"]] = _to_decimal
            elif logical in ("timestamp-millis", "timestamp-micros"):
                out[f["name"]] = _to_datetime
            elif logical == "date":
                out[f["name"]] = _to_date
    return out


def _to_decimal(v: Any) -> Any:
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        try:
            return Decimal(str(v))
        except InvalidOperation:
            return v
    return v


def _to_datetime(v: Any) -> Any:
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    return v


def _to_date(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return date.fromisoformat(v)
        except ValueError:
            return v
    return v


class AvroCodec:
    """Encode/decode record values with one Avro schema and its registry id.

    ``encode`` accepts the values a source produces: Decimal or decimal strings for
    ``decimal``, datetimes (naive = UTC) or ISO-8601 strings for ``timestamp-*``, dates or
    ISO strings for ``date``. Not thread-safe across concurrent ``encode`` calls on one instance
    is fine: every call uses its own buffer.
    """

    name = "avro"

    def __init__(self, schema: Mapping[str, Any], schema_id: int) -> None:
        self.schema_id = schema_id
        self.raw_schema = dict(schema)
        self._parsed = fastavro.parse_schema(dict(schema))
        self._header = _HEADER.pack(MAGIC, schema_id)
        self._coerce = _coercers(schema)

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Framed Avro bytes of ``value``; SchemaMismatch names the field and reason."""
        if self._coerce:
            value = dict(value)
            for name, fn in self._coerce.items():
                if name in value:
                    value[name] = fn(value[name])
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            fastavro.schemaless_writer(buf, self._parsed, value)
        except Exception as exc:
            raise self._explain(value, exc) from None
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """The value in framed Avro ``data``; SchemaMismatch on a wrong id or bad body."""
        schema_id, body = split_wire(data)
        if schema_id != self.schema_id:
            raise SchemaMismatch(f"schema id {schema_id} is not this codec's id {self.schema_id}")
        try:
            out = fastavro.schemaless_reader(io.BytesIO(body), self._parsed, None)
        except Exception as exc:
            raise SchemaMismatch(f"not a valid Avro body: {exc}") from None
        assert isinstance(out, dict)
        return out

    def _explain(self, value: Mapping[str, Any], exc: Exception) -> SchemaMismatch:
        if not isinstance(value, Mapping):
            return SchemaMismatch(f"expected a record, got {type(value).__name__}")
        known = {f["name"] for f in self.raw_schema.get("fields", [])}
        for f in self.raw_schema.get("fields", []):
            name = f["name"]
            if name not in value and "default" not in f:
                return SchemaMismatch(f"field {name!r} is missing", field=name)
        try:
            validate(value, self._parsed, raise_errors=True)
        except ValidationError as err:
            detail = "; ".join(str(e) for e in err.errors) or str(err)
            field = None
            for name in known:
                if f".{name} " in detail or f"'{name}'" in detail or f".{name}'" in detail:
                    field = name
                    break
            return SchemaMismatch(f"does not match schema: {detail[:300]}", field=field)
        return SchemaMismatch(f"does not match schema: {type(exc).__name__}: {exc}")


class AvroDecoder:
    """Decodes Confluent-framed Avro of any schema id, looking ids up in ``registry`` once.

    ``registry`` is anything with ``schema_for_id(id) -> dict`` (``schemas.registry``).
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._codecs: dict[int, AvroCodec] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record in ``data``; SchemaMismatch for an unknown id or a bad body."""
        schema_id, _body = split_wire(data)
        codec = self._codecs.get(schema_id)
        if codec is None:
            try:
                schema = self._registry.schema_for_id(schema_id)
            except LookupError as exc:
                raise SchemaMismatch(str(exc)) from None
            codec = self._codecs[schema_id] = AvroCodec(schema, schema_id)
        return codec.decode(data)
