"""The producer runner: poll a source, encode, produce, and checkpoint behind the acks.

Contract:

- Records are produced in source order with a delivery callback. A batch's checkpoint state is
  stored only once every record and dead letter of that batch *and of every earlier batch* was
  acknowledged (acks=all, idempotent producer), so a restart resumes with no gap and re-sends
  at most what was not yet acknowledged.
- A poison input (unparsable, wrong CSV field count, schema mismatch, missing key field) goes
  to ``<topic>.dlq`` with its position and the source moves on.
- ``exactly_once``: each batch and its checkpoint are one Kafka transaction.
- ``stop()`` (SIGTERM) ends the current batch, flushes, stores the checkpoint and returns.
- A failed delivery (after librdkafka's own retries) stops the runner with ``DeliveryError``
  before any checkpoint past it is written.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from headrace import metrics
from headrace.checkpoints import CheckpointStore
from headrace.dlq import DeadLetter, DeadLetterWriter
from headrace.errors import HeadraceError, PoisonRecord
from producers.batch import Batch, Poison, Source
from producers.encoder import RecordEncoder

__all__ = ["DeliveryError", "Progress", "Runner", "tune_gc"]

log = logging.getLogger(__name__)


def tune_gc() -> None:
    """Process-wide: make the cyclic GC rare. A producer keeps tens of thousands of young
    records alive per batch; with the default thresholds the collector rescans them over and
    over (measured: half the parse time of a JSONL object). Records hold no cycles, so
    reference counting frees them; a full collection still runs now and then."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class DeliveryError(HeadraceError):
    """The broker did not acknowledge a record; nothing past it was checkpointed."""


@dataclass
class Progress:
    """Counters of one runner, read by the progress display and the tests."""

    records: int = 0
    dead_letters: int = 0
    units: int = 0
    checkpoints: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class _Pending:
    """Outstanding deliveries of one batch."""

    __slots__ = ("errors", "left", "started", "state")

    def __init__(self, state: dict[str, Any]) -> None:
        self.left = 0
        self.state = state
        self.errors: list[str] = []
        self.started = time.perf_counter()

    def ack(self, err: KafkaError | None, _msg: Message) -> None:
        self.left -= 1
        if err is not None:
            self.errors.append(str(err))


class _Tracked:
    """A producer view whose ``produce`` counts the message in a batch's deliveries."""

    def __init__(self, producer: Producer, pending: _Pending) -> None:
        self._p = producer
        self._pending = pending

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        **kw: Any,
    ) -> None:
        self._p.produce(
            topic,
            value=value,
            key=key,
            headers=headers,  # type: ignore[arg-type]
            on_delivery=self._pending.ack,
            **kw,
        )
        self._pending.left += 1

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._p.poll(timeout))


class Runner:
    """Runs one source into one topic (see the module docstring)."""

    def __init__(
        self,
        *,
        pipeline: str,
        source: Source,
        topic: str,
        encoder: RecordEncoder,
        producer: Producer,
        store: CheckpointStore | None,
        exactly_once: bool = False,
        checkpoint_interval: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.source = source
        self.topic = topic
        self.encoder = encoder
        self.producer = producer
        self.store = store
        self.exactly_once = exactly_once
        self.checkpoint_interval = checkpoint_interval
        self.on_progress = on_progress
        self.progress = Progress()
        self._stop = threading.Event()
        self._pending: deque[_Pending] = deque()
        self._acked_state: dict[str, Any] | None = None
        self._stored_state: dict[str, Any] | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint_errors: list[str] = []
        labels = (pipeline, source.name, "source")
        self._m_produced = metrics.RECORDS.labels(*labels, "produced")
        self._m_dlq_outcome = metrics.RECORDS.labels(*labels, "dlq")
        self._m_dlq = metrics.DLQ_RECORDS.labels(*labels)
        self._m_bytes = metrics.BYTES.labels(*labels, "out")
        self._m_batch = metrics.BATCH_SECONDS.labels(*labels)
        self._m_lag = metrics.CHECKPOINT_LAG.labels(*labels)
        self._stage = source.name

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to finish the current batch, checkpoint and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool, poll_interval: float) -> Progress:
        """Restore, then pass over the source until stopped (or once). Returns the counters."""
        if self.exactly_once:
            self.producer.init_transactions(30)
        self.source.restore(self.store.load() if self.store is not None else None)
        self.progress.started = time.monotonic()
        try:
            while not self._stop.is_set():
                self.run_pass()
                if once:
                    break
                self._stop.wait(poll_interval)
            if not self.exactly_once:
                self._drain()
        finally:
            # on an error nothing more is checkpointed; deliveries still get their chance
            self.producer.flush(30)
            self.source.close()
        return self.progress

    def run_pass(self) -> None:
        """One pass over the source: every batch until caught up (or stopped)."""
        gen = self.source.batches()
        try:
            for batch in gen:
                if self.exactly_once:
                    self._transactional(batch)
                else:
                    self._send(batch)
                    self._advance(block=False)
                if self._stop.is_set():
                    break
        finally:
            gen.close()
        self._drain()

    # -- producing ----------------------------------------------------------------------

    def _send(self, batch: Batch) -> _Pending:
        pending = _Pending(batch.state)
        tracked = _Tracked(self.producer, pending)
        dlq = DeadLetterWriter(tracked)
        encode = self.encoder.encode
        produce = self.producer.produce
        topic = self.topic
        ack = pending.ack
        sent = 0
        nbytes = 0
        for rec in batch.records:
            try:
                key, value, ts = encode(rec)
            except PoisonRecord as exc:
                dead_key, dead_value = self.encoder.best_effort(rec)
                self._dead_letter(dlq, exc, rec.position, dead_value, dead_key)
                continue
            while True:
                try:
                    if ts is None:
                        produce(topic, value, key, on_delivery=ack)
                    else:
                        produce(topic, value, key, on_delivery=ack, timestamp=ts)
                    break
                except BufferError:
                    self.producer.poll(0.05)
                    self._advance(block=False)
                except KafkaException as exc:
                    # refused locally, e.g. larger than message.max.bytes: a poison record
                    poison = PoisonRecord(f"{len(value)} bytes refused by the producer: {exc}")
                    self._dead_letter(dlq, poison, rec.position, None, key)
                    value = b""
                    break
            if not value:
                continue
            sent += 1
            nbytes += len(value)
        pending.left += sent
        for p in batch.poison:
            self._dead_letter(dlq, p, p.position, p.raw, None)
        self.producer.poll(0)
        self._pending.append(pending)
        self.progress.records += sent
        self.progress.bytes += nbytes
        self.progress.units += batch.units
        self._m_produced.inc(sent)
        self._m_bytes.inc(nbytes)
        return pending

    def _dead_letter(
        self,
        dlq: DeadLetterWriter,
        err: PoisonRecord | Poison,
        position: dict[str, Any] | None,
        raw: bytes | None,
        key: bytes | None,
    ) -> None:
        if isinstance(err, Poison):
            letter = DeadLetter(
                self.topic, self._stage, err.error_class, err.message, position, key, raw
            )
        else:
            letter = DeadLetter.from_error(
                topic=self.topic,
                stage=self._stage,
                error=err,
                position=position,
                key=key,
                value=raw,
            )
        dlq.send(letter)
        self.progress.dead_letters += 1
        self._m_dlq.inc()
        self._m_dlq_outcome.inc()
        log.warning(
            "source %r: record at %s sent to %s.dlq: %s: %s",
            self._stage,
            position,
            self.topic,
            letter.error_class,
            letter.message[:200],
        )

    def _transactional(self, batch: Batch) -> None:
        self.producer.begin_transaction()
        try:
            pending = self._send(batch)
            if self.store is not None:
                self.store.save(self.producer, batch.state)
            self.producer.commit_transaction(60)
        except BaseException:
            self.producer.abort_transaction(60)
            raise
        self._pending.clear()
        if pending.errors:
            raise DeliveryError(f"source {self._stage!r}: {pending.errors[0]}")
        self._stored_state = batch.state
        self.progress.checkpoints += 1
        self._m_batch.observe(time.perf_counter() - pending.started)
        self._m_lag.set(0)
        self._report()

    # -- acknowledgements and checkpoints -----------------------------------------------

    def _advance(self, *, block: bool) -> None:
        """Pop fully acknowledged batches in order; checkpoint at most every interval."""
        self.producer.poll(0)
        while self._pending and self._pending[0].left <= 0:
            done = self._pending.popleft()
            if done.errors:
                raise DeliveryError(
                    f"source {self._stage!r}: the broker did not acknowledge "
                    f"{len(done.errors)} record(s) of a batch: {done.errors[0]}; nothing past "
                    "the last checkpoint is stored, a restart sends them again"
                )
            self._acked_state = done.state
            self._m_batch.observe(time.perf_counter() - done.started)
        now = time.monotonic()
        due = block or now - self._last_checkpoint >= self.checkpoint_interval
        fresh = self._acked_state is not None and self._acked_state is not self._stored_state
        if self._checkpoint_errors:
            raise DeliveryError(
                f"source {self._stage!r}: a checkpoint was not stored in "
                f"{self.store.topic if self.store else '?'}: {self._checkpoint_errors[0]}"
            )
        if due and fresh and self.store is not None and self._acked_state is not None:
            self.store.save(self.producer, self._acked_state, self._checkpoint_delivered)
            self._stored_state = self._acked_state
            self._last_checkpoint = now
            self.progress.checkpoints += 1
            if block:
                self.producer.flush(30)
                if self._checkpoint_errors:
                    raise DeliveryError(
                        f"source {self._stage!r}: the last checkpoint was not stored: "
                        f"{self._checkpoint_errors[0]}"
                    )
        self._m_lag.set(now - self._last_checkpoint)
        self._report()

    def _checkpoint_delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._checkpoint_errors.append(str(err))

    def _drain(self) -> None:
        """Wait for every outstanding delivery, then store the last state."""
        while self._pending:
            self.producer.poll(0.1)
            if self._pending and self._pending[0].left <= 0:
                self._advance(block=False)
        self._advance(block=True)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
