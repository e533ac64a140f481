"""The wire contract: the ``Record`` envelope, key encoding, and codecs (JSON; Avro lands with
the producers). Imports nothing of headrace's own."""

from schemas.jsoncodec import JsonCodec, JsonDecodeError
from schemas.record import Record, encode_key, key_of

__all__ = ["JsonCodec", "JsonDecodeError", "Record", "encode_key", "key_of"]
