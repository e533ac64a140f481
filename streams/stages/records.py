"""A ``records`` stage: lookup (optional), transform steps, output key, rate limit.

Per input message, in order: decode (JSON, or Avro by schema id; bad bytes -> DLQ), enrich
from the lookup table (``missing: keep|drop|dlq``), apply the transform (a PoisonRecord ->
DLQ, the batch goes on), key each output by ``key`` fields (default: the input key). An output
with no key goes to the partition its source position picks (``crc32`` of the
``headrace.source`` header, modulo the output's partitions), not a random one: a replay after
a crash then lands where the first copy did, on the same path, and a stateful stage
downstream recognizes it (positions are compared per path, see ``HEADER_SOURCE``). The rate
limit then decides for the whole batch: ``delay`` returns ``wait_s`` (the runtime sleeps
before producing), ``shed`` sends the excess, unchanged, to ``<from>.overflow``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from zlib import crc32

from headrace.config import Stage
from headrace.errors import PoisonRecord
from schemas import encode_key
from streams.operators.ratelimit import StageLimiter, overflow_topic
from streams.operators.transform import Transformer
from streams.stages.base import (
    HEADER_SOURCE,
    BatchOutput,
    InMessage,
    OutMessage,
    StageDefaults,
    dead_letter,
    upstream_source,
)

__all__ = ["RecordsStage"]

LookupGet = Callable[[bytes], Mapping[str, Any] | None]


class RecordsStage(StageDefaults):
    """Stateless per record (the rate limiter keeps its buckets); see the module doc."""

    def __init__(
        self,
        name: str,
        stage: Stage,
        *,
        schemas_dir: Path | None = None,
        lookup: LookupGet | None = None,
        clock: Callable[[], float] = time.monotonic,
        out_partitions: int | None = None,
    ) -> None:
        self.name = name
        self.stage = stage
        #: partitions of ``stage.to``: an output without a key goes to one chosen by its
        #: source position (see ``process``); None leaves it to the producer (random)
        self.out_partitions = out_partitions
        self.source = stage.from_
        self.transformer = Transformer(stage.transform or [], schemas_dir=schemas_dir)
        self.limiter = StageLimiter(stage.rate_limit, clock) if stage.rate_limit else None
        self.key_fields = tuple(stage.key) if stage.key else None
        self.lookup = lookup

    def _enrich(self, value: dict[str, Any]) -> dict[str, Any] | None:
        spec = self.stage.lookup
        if spec is None or self.lookup is None:
            return value
        found = self.lookup(encode_key([value.get(f) for f in spec.on]))
        if found is None:
            if spec.missing == "keep":
                return value
            if spec.missing == "drop":
                return None
            raise PoisonRecord(
                f"lookup: no value in {spec.table_from!r} for "
                f"{', '.join(f'{f}={value.get(f)!r}' for f in spec.on)} (missing: dlq)"
            )
        return {**value, **{f: found.get(f) for f in spec.fields}}

    def process(self, partition: int, batch: list[InMessage], wall_ms: int = 0) -> BatchOutput:
        """The batch's outputs in input order (the hot loop of a worker: per record only
        what the module doc lists, the rest once per batch)."""
        out = BatchOutput()
        limiter = self.limiter
        # without a rate limit the outputs go straight out; with one, the limiter decides
        # on the values first (shed keeps the input message for the overflow topic)
        staged: list[tuple[InMessage, OutMessage, dict[str, Any]]] = []
        messages = out.messages
        to, key_fields, apply = self.stage.to, self.key_fields, self.transformer.apply
        out_partitions = self.out_partitions
        enrich = self._enrich if self.stage.lookup is not None else None
        decode, encode = self.codec.decode, self.codec.encode
        dropped = 0
        topic, part, prefix, via = "", -1, b"", b""  # the source header's parts, per partition
        for msg in batch:
            try:
                raw = msg.value
                if raw is None:  # a tombstone: nothing to transform
                    dropped += 1
                    continue
                value: dict[str, Any] | None = decode(raw)
                if enrich is not None:
                    value = enrich(value)  # type: ignore[arg-type]
                    if value is None:
                        dropped += 1
                        continue
                results = apply(value, owned=True)  # type: ignore[arg-type]
                if not results:
                    dropped += 1
                    continue
                if msg.partition != part or msg.topic != topic:
                    topic, part = msg.topic, msg.partition
                    prefix = f"{topic}|{part}|".encode()
                    via = f">{topic}|{part}|".encode()
                upstream = upstream_source(msg) if msg.headers else None
                for index, result in enumerate(results):
                    key = encode_key([result.get(f) for f in key_fields]) if key_fields else msg.key
                    if upstream is None:
                        source = b"%b%d|%d" % (prefix, msg.offset, index)
                    else:  # an upstream records stage's position, through this partition
                        where, offset, levels = upstream
                        source = b"%b%b%b|%b.%d" % (where, via, offset, levels, index)
                    out_msg = OutMessage(
                        to, key, encode(result), msg.timestamp_ms, [(HEADER_SOURCE, source)]
                    )
                    if key is None and out_partitions:
                        out_msg.partition = crc32(source) % out_partitions
                    if limiter is None:
                        messages.append(out_msg)
                    else:
                        staged.append((msg, out_msg, result))
            except (PoisonRecord, ValueError, TypeError) as exc:
                out.dead.append(dead_letter(self.name, msg, exc))
        if dropped:
            out.count("dropped", dropped)
        if limiter is not None and staged:
            decision = limiter.decide([v for _, _, v in staged])
            out.wait_s = decision.wait_s
            for (msg, m, _), keep in zip(staged, decision.keep, strict=True):
                if keep:
                    messages.append(m)
                else:
                    messages.append(
                        OutMessage(
                            overflow_topic(self.source), msg.key, msg.value, msg.timestamp_ms
                        )
                    )
            out.count("shed", decision.shed)
        out.count("out", len(messages) - out.counts.get("shed", 0))
        out.count("dlq", len(out.dead))
        return out

    def batch_limit(self) -> int | None:
        """With ``on_excess: delay``, at most one burst per batch: the output then leaves in
        bursts no larger than the limit allows instead of one big batch after a long wait."""
        if self.limiter is None or self.stage.rate_limit is None:
            return None
        if self.stage.rate_limit.on_excess != "delay":
            return None
        return max(1, int(self.limiter.burst))

    def set_share(self, assigned: int, total: int) -> None:
        """This worker holds ``assigned`` of the input's ``total`` partitions."""
        if self.limiter is not None:
            self.limiter.set_share(assigned, total)
