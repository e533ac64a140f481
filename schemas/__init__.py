"""The wire contract: the ``Record`` envelope, key encoding, and codecs (JSON with orjson; Avro
with fastavro in the Confluent wire format), and schema ids (local registry file or a
Confluent-compatible registry). Imports nothing of headrace's own."""

from schemas.avrocodec import MAGIC, AvroCodec, AvroDecoder, SchemaMismatch, split_wire
from schemas.jsoncodec import JsonCodec, JsonDecodeError
from schemas.record import Record, encode_key, key_of
from schemas.recordcodec import RecordCodec
from schemas.registry import (
    ConfluentRegistry,
    LocalRegistry,
    Registry,
    SchemaNotFound,
    fingerprint,
    load_schema,
)

__all__ = [
    "MAGIC",
    "AvroCodec",
    "AvroDecoder",
    "ConfluentRegistry",
    "JsonCodec",
    "JsonDecodeError",
    "LocalRegistry",
    "Record",
    "RecordCodec",
    "Registry",
    "SchemaMismatch",
    "SchemaNotFound",
    "encode_key",
    "fingerprint",
    "key_of",
    "load_schema",
    "split_wire",
]
