"""Turn a source record's value into Kafka message parts: key bytes, value bytes, timestamp.

The value codec is JSON (orjson) or Avro (Confluent-framed, schema from the schema dir, id
from the local registry file or ``schemas.registry_url``). A record that cannot be encoded
(a key field missing, a bad event time, a schema mismatch) raises ``PoisonRecord`` naming the
field and the reason; the runner sends it to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from operator import floordiv, itemgetter, sub
from typing import TYPE_CHECKING, Any

from headrace.errors import ConfigError, PoisonRecord
from schemas import (
    AvroCodec,
    JsonCodec,
    SchemaMismatch,
    SchemaNotFound,
    encode_key,
    load_schema,
)

if TYPE_CHECKING:
    from headrace.config import Pipeline
    from headrace.config.sources import SourceBase

__all__ = [
    "Encoded",
    "RecordEncoder",
    "codec_for",
    "event_time_ms",
    "make_codec",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def event_time_ms(value: Any) -> int:
    """Milliseconds since the epoch of an event time: a datetime (naive = UTC), a date, an
    ISO-8601 string, or a number (ms). ValueError when it is none of these."""
    kind = type(value)
    if kind is str:
        value = datetime.fromisoformat(value)  # 3.11: accepts a trailing Z
        kind = datetime
    if kind is datetime:
        # exact, and faster than timestamp() or timedelta division; naive means UTC
        delta: timedelta = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if kind is int or kind is float:
        return _ms(value)
    if isinstance(value, datetime):  # a subclass
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(value, date):
        return event_time_ms(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        return _ms(value)
    raise ValueError(f"{type(value).__name__} {value!r} is not a time")


def _ms(value: float) -> int:
    """A number of milliseconds as a Kafka timestamp (a signed 64-bit integer: past it the
    producer raises OverflowError and the source would stop)."""
    ms = int(value)
    if -(2**63) <= ms < 2**63:
        return ms
    raise ValueError(f"{value!r} ms is past the 64-bit range of a Kafka timestamp")


def make_codec(
    pipeline: Pipeline, source: SourceBase, *, topic: str | None = None
) -> JsonCodec | AvroCodec:
    """The value codec of ``source`` (see :func:`codec_for`)."""
    return codec_for(pipeline, source.schema_, source.output_format, topic or source.topic)


def codec_for(
    pipeline: Pipeline, schema_name: str | None, output_format: str, topic: str
) -> JsonCodec | AvroCodec:
    """JSON (checked against ``schema_name`` when given) or Avro (schema registered for
    ``topic``); ConfigError if the schema file is missing or invalid."""
    if schema_name is None:
        if output_format == "avro":
            raise ConfigError("Avro output needs a schema; name one with `schema`")
        return JsonCodec()
    try:
        schema = load_schema(pipeline.schema_dir, schema_name)
    except SchemaNotFound as exc:
        raise ConfigError(str(exc), path=str(pipeline.file or ""), key="schema") from None
    if output_format == "json":
        return _ValidatingJson(AvroCodec(schema, 0))
    return AvroCodec(schema, pipeline.schema_registry().schema_id(schema_name, topic, schema))


class _ValidatingJson(JsonCodec):
    """JSON output that is first checked against an Avro schema (``schema:`` with json)."""

    def __init__(self, avro: AvroCodec, *, naive_utc: bool = False) -> None:
        super().__init__(naive_utc=naive_utc)
        self._avro = avro

    def as_naive_utc(self) -> _ValidatingJson:
        return _ValidatingJson(self._avro, naive_utc=True)

    def encode(self, value: dict[str, Any]) -> bytes:
        self._avro.encode(value)
        return super().encode(value)


_PLAIN_JSON = JsonCodec()


def _key1(k: Any) -> bytes:
    return str(k).encode() if type(k) is int else encode_key((k,))


@dataclass(slots=True)
class Encoded:
    """A batch's Kafka message parts, aligned with its records: ``keys`` (None: no key
    fields), ``datas`` (None for a poison record), ``times`` (None: no timestamp field), and
    ``poison`` by record index; ``nbytes``, when known, is the total length of ``datas``;
    ``headers``, when a source sets them, the Kafka headers of each record (None: none at
    all, the messages are then produced exactly as without the field)."""

    keys: list[bytes | None] | None
    datas: list[bytes | None]
    times: list[int | None] | None
    poison: dict[int, PoisonRecord] = field(default_factory=dict)
    nbytes: int | None = None
    headers: list[list[tuple[str, bytes]] | None] | None = None

    def good(self) -> tuple[Encoded, list[int]]:
        """The parts of the records that are not poison, and the index of each among all."""
        index = [i for i in range(len(self.datas)) if i not in self.poison]
        keys, times, headers = self.keys, self.times, self.headers
        return (
            Encoded(
                None if keys is None else [keys[i] for i in index],
                [self.datas[i] for i in index],
                None if times is None else [times[i] for i in index],
                headers=None if headers is None else [headers[i] for i in index],
            ),
            index,
        )


class RecordEncoder:
    """Key, value and timestamp of each record, with one codec. Not thread-safe."""

    def __init__(
        self,
        codec: JsonCodec | AvroCodec,
        key_fields: Sequence[str] | None = None,
        timestamp_field: str | None = None,
    ) -> None:
        self.codec = codec
        self.key_fields = tuple(key_fields or ())
        self.timestamp_field = timestamp_field
        # raw source bytes may be sent as they are only by a plain JSON codec
        self._raw_ok = type(codec) is JsonCodec
        self._last_ts_in: Any = None
        self._last_ts_out: int | None = None

    def fork(self) -> RecordEncoder:
        """An encoder with the same codec and fields and its own state, for another thread."""
        return RecordEncoder(self.codec, self.key_fields, self.timestamp_field)

    def encode_many(
        self, values: Sequence[dict[str, Any] | None], raws: Sequence[bytes | None] | None
    ) -> Encoded:
        """Every record of a batch at once (``raws[i]``: the source bytes of ``values[i]``,
        or ``raws`` None). Whole-column comprehensions on the common path; when any record
        is poison, the batch is encoded record by record and the poison is reported by
        index (its ``datas`` entry is None)."""
        try:
            return Encoded(self._keys(values), self._datas(values, raws), self._times(values))
        except Exception:  # some record is poison: find which, one by one
            return self._one_by_one(values, raws)

    def _keys(self, values: Sequence[dict[str, Any] | None]) -> list[bytes | None] | None:
        fields = self.key_fields
        if not fields:
            return None
        if len(fields) == 1:
            get = itemgetter(fields[0])
            try:
                # all text: C-level maps, no bytecode per key
                return list(map(str.encode, map(get, values)))  # type: ignore[arg-type]
            except TypeError:
                # str and int keys are their text (as encode_key makes them), others encode_key
                column = map(get, values)  # type: ignore[arg-type]
                return [k.encode() if type(k) is str else _key1(k) for k in column]
        return [encode_key(tuple(v[f] for f in fields)) for v in values]  # type: ignore[index]

    def _datas(
        self, values: Sequence[dict[str, Any] | None], raws: Sequence[bytes | None] | None
    ) -> list[bytes | None]:
        encode = self.codec.encode
        if self._raw_ok and raws is not None:
            # all(): a C-level truth test per item, ~3x cheaper than `None in` (a rich
            # comparison per item), which runs only when some item is empty or None
            if not all(values) and None in values:
                raise PoisonRecord("a source record has no value")
            if all(raws) or None not in raws:
                return list(raws)
            return [r if r is not None else encode(v) for v, r in zip(values, raws, strict=True)]  # type: ignore[arg-type]
        return [encode(v) for v in values]  # type: ignore[arg-type]

    def _times(self, values: Sequence[dict[str, Any] | None]) -> list[int | None] | None:
        f = self.timestamp_field
        if f is None:
            return None
        get = itemgetter(f)
        try:
            # ISO-8601 text with an offset (the common case): C-level maps, exactly
            # event_time_ms's floor of the milliseconds since the epoch
            aware = map(datetime.fromisoformat, map(get, values))  # type: ignore[arg-type]
            return list(map(floordiv, map(sub, aware, repeat(_EPOCH)), repeat(_MS)))
        except (TypeError, ValueError):  # not text, no offset (naive), not a time: one by one
            return [event_time_ms(get(v)) for v in values]  # type: ignore[arg-type]

    def _one_by_one(
        self, values: Sequence[dict[str, Any] | None], raws: Sequence[bytes | None] | None
    ) -> Encoded:
        out = Encoded([] if self.key_fields else None, [], [] if self.timestamp_field else None)
        for i, value in enumerate(values):
            try:
                key, data, ts = self.encode(value, raws[i] if raws is not None else None)
            except PoisonRecord as exc:
                out.poison[i] = exc
                key, data, ts = None, None, None
            if out.keys is not None:
                out.keys.append(key)
            out.datas.append(data)
            if out.times is not None:
                out.times.append(ts)
        return out

    def best_effort(
        self, value: dict[str, Any] | None, raw: bytes | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """(key, value bytes) of a rejected record for its dead letter: the source bytes
        ``raw`` when known, else JSON of the value; each None when it cannot be made."""
        value = value or {}
        try:
            key = encode_key(tuple(value[f] for f in self.key_fields)) if self.key_fields else None
        except (KeyError, TypeError):
            key = None
        if raw is not None:
            return key, raw
        try:
            return key, _PLAIN_JSON.encode(value)
        except TypeError:
            return key, None

    def encode(
        self, value: dict[str, Any] | None, raw: bytes | None = None
    ) -> tuple[bytes | None, bytes, int | None]:
        """(key, value bytes, timestamp ms or None) of one record whose source bytes are
        ``raw`` (sent unchanged by a plain JSON codec); PoisonRecord with field and reason."""
        if value is None:
            raise PoisonRecord("a source record has no value")
        key: bytes | None = None
        fields = self.key_fields
        if fields:
            try:
                if len(fields) == 1 and type(k := value[fields[0]]) in (str, int):
                    key = str(k).encode()  # the common case, same bytes as encode_key
                else:
                    key = encode_key(tuple(value[f] for f in fields))
            except KeyError as exc:
                name = exc.args[0]
                raise PoisonRecord(f"key field {name!r} missing from record", field=name) from None
        ts: int | None = None
        if self.timestamp_field is not None:
            raw_ts = value.get(self.timestamp_field)
            last = self._last_ts_in
            # event times repeat a lot in sorted data; the same type too, as True == 1 (a
            # bool is not a time) and 1 == 1.0
            if raw_ts is not None and raw_ts == last and type(raw_ts) is type(last):
                ts = self._last_ts_out
            else:
                try:
                    ts = event_time_ms(raw_ts)
                except (ValueError, OverflowError) as exc:
                    raise PoisonRecord(
                        f"timestamp field {self.timestamp_field!r}: {exc}",
                        field=self.timestamp_field,
                    ) from None
                self._last_ts_in, self._last_ts_out = raw_ts, ts
        if raw is not None and self._raw_ok:
            return key, raw, ts
        try:
            data = self.codec.encode(value)
        except SchemaMismatch as exc:
            raise PoisonRecord(f"schema mismatch: {exc}", field=exc.field) from None
        except TypeError as exc:
            raise PoisonRecord(f"cannot encode value: {exc}") from None
        return key, data, ts
