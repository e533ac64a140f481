"""``RecordCodec``: how every stage and sink reads a message value and how stages write one.

Reading: a Kafka message value is JSON, or Confluent-framed Avro (magic byte 0, schema id,
body) when a source wrote Avro; the schema is looked up by id in the ``registry`` given (the
pipeline's: ``Pipeline.schema_registry()``) and cached per id. Writing: JSON (exact
decimals as text, see ``schemas.jsoncodec``). An instance holds no global state; the worker
and each sink build one and pass it on (``StageDefaults.codec``, ``SinkRunner(codec=...)``).
"""

from __future__ import annotations

from typing import Any

from schemas.avrocodec import MAGIC, AvroDecoder, split_wire
from schemas.jsoncodec import JsonCodec

__all__ = ["RecordCodec"]

_AVRO_MAGIC = bytes([MAGIC])


class RecordCodec(JsonCodec):
    """JSON out; in, JSON or Confluent-framed Avro (with a registry). Thread-safe for reads
    once a schema id is cached; a cache miss is a registry lookup."""

    def __init__(self, registry: Any | None = None) -> None:
        super().__init__()
        self._avro = AvroDecoder(registry) if registry is not None else None

    def decode(self, data: bytes) -> dict[str, Any]:
        """The record in ``data``: ``JsonDecodeError`` when it is not a JSON object,
        ``SchemaMismatch`` for Avro it cannot decode (unknown id, bad body), ValueError for
        Avro without a registry. All are ValueErrors: the caller dead-letters the message."""
        if data[:1] == _AVRO_MAGIC and len(data) >= 5:
            if self._avro is None:
                schema_id, _body = split_wire(data)
                raise ValueError(
                    f"Confluent-framed Avro (schema id {schema_id}) but no schema registry"
                )
            return self._avro.decode(data)
        return super().decode(data)

    def decode_value(self, data: bytes | None) -> dict[str, Any] | None:
        """``decode``, with None (a tombstone) for None."""
        return None if data is None else self.decode(data)
