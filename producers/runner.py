"""The producer runner: poll a source, encode, produce, and checkpoint behind the acks.

Contract:

- Records are produced in source order (acks=all, idempotent producer). A batch's checkpoint
  state is stored only once every record and dead letter of that batch *and of every earlier
  batch* was acknowledged: after ``checkpoint_interval``, at the first moment the producer has
  nothing outstanding (or, for a source that never pauses, after ``FORCE_AFTER`` intervals, by
  waiting for it: a flush barrier, while the source's reader threads keep parsing), the runner
  stores the state of the last batch produced. So a restart resumes with no gap and re-sends
  at most what was produced since the last checkpoint.
- Delivery reports come only for failures (``delivery.report.only.error`` with the producer's
  ``on_delivery`` set to the runner's ``DeliveryReports``, see ``delivery_settings``): a
  per-message callback cost more CPU than producing itself.
- A poison input (unparsable, wrong CSV field count, schema mismatch, missing key field) goes
  to ``<topic>.dlq`` with its position and the source moves on.
- ``exactly_once``: each batch and its checkpoint are one Kafka transaction.
- ``stop()`` (SIGTERM) ends the current batch, flushes, stores the checkpoint and returns.
- A failed delivery (after librdkafka's own retries) stops the runner with ``DeliveryError``
  before any checkpoint past it is written.
- Watchdog (``stall``, for ``headrace.watchdog``): progress is a batch produced, a checkpoint
  stored or a pass finished; work is pending while a pass (or the restore) runs or records
  wait for the broker's acknowledgement. A source waiting for its next poll is idle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import length_hint
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from headrace import faults, metrics
from headrace.checkpoints import CheckpointStore
from headrace.dlq import DeadLetter, DeadLetterWriter
from headrace.errors import DeliveryError, PoisonRecord
from headrace.watchdog import ProgressClock, Stall
from producers.batch import Batch, Poison, Source
from producers.encoder import RecordEncoder

__all__ = [
    "DeliveryError",
    "DeliveryReports",
    "Progress",
    "Runner",
    "delivery_settings",
]

log = logging.getLogger(__name__)


#: A checkpoint waits for outstanding deliveries (a flush) once this many checkpoint intervals
#: passed without a moment when none was outstanding.
FORCE_AFTER = 3
#: While it produces, the runner's thread serves delivery reports (failures only) at most this
#: often (seconds): each poll gives up the GIL, and taking it back from a reader thread in the
#: middle of a long C call cost up to a few ms (a py-spy profile of the 1.3 M-line S3 object
#: showed two polls per batch taking a third as long as producing itself).
POLL_INTERVAL = 0.1


class DeliveryReports:
    """The producer's delivery callback: collects failed deliveries (``topic: error``)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append((str(msg.topic()), str(err)))


def delivery_settings(reports: DeliveryReports) -> dict[str, Any]:
    """Producer settings that report only failed deliveries, to ``reports``."""
    return {"on_delivery": reports, "delivery.report.only.error": True}


@dataclass
class Progress:
    """Counters of one runner, read by the progress display and the tests."""

    records: int = 0
    dead_letters: int = 0
    units: int = 0
    checkpoints: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class Runner:
    """Runs one source into one topic (see the module docstring). ``producer`` must be made
    with ``delivery_settings(reports)``."""

    def __init__(
        self,
        *,
        pipeline: str,
        source: Source,
        topic: str,
        encoder: RecordEncoder,
        producer: Producer,
        store: CheckpointStore | None,
        reports: DeliveryReports,
        exactly_once: bool = False,
        checkpoint_interval: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.source = source
        self.topic = topic
        self.encoder = encoder
        self.producer = producer
        self.store = store
        self.reports = reports
        self.exactly_once = exactly_once
        self.checkpoint_interval = checkpoint_interval
        self.on_progress = on_progress
        self.progress = Progress()
        self._stop = threading.Event()
        self._dlq = DeadLetterWriter(producer)
        self._produced_state: dict[str, Any] | None = None  # of the last batch produced
        self._stored_state: dict[str, Any] | None = None
        self._unacked_since: float | None = None  # when the oldest unacknowledged batch began
        self._last_checkpoint = time.monotonic()
        self._last_poll = 0.0  # when delivery reports were last served (monotonic)
        labels = (pipeline, source.name, "source")
        self._m_produced = metrics.RECORDS.labels(*labels, "produced")
        self._m_dlq_outcome = metrics.RECORDS.labels(*labels, "dlq")
        self._m_dlq = metrics.DLQ_RECORDS.labels(*labels)
        self._m_bytes = metrics.BYTES.labels(*labels, "out")
        self._m_batch = metrics.BATCH_SECONDS.labels(*labels)
        self._m_lag = metrics.CHECKPOINT_LAG.labels(*labels)
        self._stage = source.name
        #: the watchdog's view (see ``stall``); ``_busy`` names what the runner is doing
        self.watch = ProgressClock()
        self._busy: str | None = None
        #: True when a stop arrived before the last pass read the source to its end: a
        #: ``once`` run that returns with this set did not ingest everything
        self.interrupted = False

    # -- control ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to finish the current batch, checkpoint and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pending(self) -> str | None:
        """The work waiting now, in words (None: idle between polls). Any thread."""
        try:
            waiting = len(self.producer)
        except Exception:  # a closed producer
            waiting = 0
        acks = f"{waiting:,} records wait for the broker's acknowledgement" if waiting else ""
        if self._busy is None:
            return acks or None
        return f"{self._busy}{f' ({acks})' if acks else ''}"

    def stall(self) -> Stall | None:
        """For ``headrace.watchdog.Watchdog``: since when work has waited without progress."""
        return self.watch.stall(self.pending())

    def run(self, *, once: bool, poll_interval: float) -> Progress:
        """Restore, then pass over the source until stopped (or once). Returns the counters."""
        self._busy = "the source's checkpoint is being restored"
        if self.exactly_once:
            self.producer.init_transactions(30)
        self.source.restore(self.store.load() if self.store is not None else None)
        self._busy = None
        self.watch.progress()
        self.progress.started = time.monotonic()
        try:
            if self._stop.is_set():
                self.interrupted = True
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
        self._busy = "a pass over the source is running"
        gen = self.source.batches()
        self.interrupted = False
        try:
            for batch in gen:
                if self.exactly_once:
                    self._transactional(batch)
                else:
                    # checked before producing: the source just spent its time reading this
                    # batch, the moment the last one is most likely acknowledged already
                    self._advance(block=False)
                    self._send(batch)
                self.watch.progress()
                if self._stop.is_set():
                    self.interrupted = True
                    break
        finally:
            gen.close()
        self._drain()
        self._busy = None
        self.watch.progress()

    # -- producing ----------------------------------------------------------------------

    def _send(self, batch: Batch) -> None:
        if self._unacked_since is None:
            self._unacked_since = time.perf_counter()
        dlq = self._dlq
        rows = batch.rows()
        enc = rows.encoded or self.encoder.encode_many(rows.values, rows.raws)
        for i, exc in enc.poison.items():
            raw = rows.raws[i] if rows.raws is not None else None
            dead_key, dead_value = self.encoder.best_effort(rows.values[i], raw)
            self._dead_letter(dlq, exc, rows.position(i), dead_value, dead_key)
        index: list[int] | None = None  # row of each produced record, when poison was left out
        if enc.poison:
            enc, index = enc.good()
        datas, keys, times = enc.datas, enc.keys, enc.times
        values = cast(list[bytes], datas)  # no poison left: every record has its bytes
        refused = self._produce_columns(values, keys, cast("list[int] | None", times), enc.headers)
        nbytes = enc.nbytes if enc.nbytes is not None else sum(map(len, values))
        for j, error in refused:
            data, key = values[j], keys[j] if keys is not None else None
            self._refused(dlq, error, rows.position(index[j] if index else j), data, key)
            nbytes -= len(data)
        for p in batch.poison:
            self._dead_letter(dlq, p, p.position, p.raw, p.key)
        sent = len(values) - len(refused)
        self._produced_state = batch.state
        self.progress.records += sent
        self.progress.bytes += nbytes
        self.progress.units += batch.units
        self._m_produced.inc(sent)
        self._m_bytes.inc(nbytes)

    def _produce_columns(
        self,
        datas: list[bytes],
        keys: list[bytes | None] | None,
        times: list[int] | None,
        headers: list[list[tuple[str, bytes]] | None] | None = None,
    ) -> list[tuple[int, KafkaException]]:
        """Produce ``datas[i]`` with ``keys[i]``, timestamp ``times[i]`` (ms) and headers
        ``headers[i]``, in order; return (index, error) of each record the producer refused.

        The hot path: one C-level ``map`` calls ``produce`` with positional arguments
        (topic, value, key, partition, on_delivery, callback, timestamp, headers; the last
        two only when given, a timestamp of 0 meaning "now"), so no bytecode and no keyword
        parsing run per record. When a call raises, the records before it are
        queued; ``left`` (the topic, repeated once per record not yet started) tells which
        one raised. A full local queue (BufferError) serves deliveries until that record
        fits; any other refusal (KafkaException, e.g. larger than message.max.bytes) is
        returned and the rest goes on."""
        produce = self.producer.produce
        n = len(datas)
        refused: list[tuple[int, KafkaException]] = []
        start = 0
        while start < n:
            left = repeat(self.topic, n - start)
            cols: list[Iterable[Any]] = [
                left,
                datas[start:] if start else datas,
                repeat(None) if keys is None else keys[start:] if start else keys,
            ]
            if times is not None or headers is not None:
                stamps = repeat(0) if times is None else times[start:] if start else times
                cols += [repeat(-1), repeat(None), repeat(None), stamps]
            if headers is not None:
                cols.append(headers[start:] if start else headers)
            try:
                deque(map(produce, *cols), maxlen=0)
                return refused
            except BufferError:
                start = n - length_hint(left) - 1  # retried once there is room
                self.producer.poll(0.05)
                self._advance(block=False)
            except KafkaException as exc:
                failed = n - length_hint(left) - 1
                refused.append((failed, exc))
                start = failed + 1
        return refused

    def _refused(
        self,
        dlq: DeadLetterWriter,
        exc: KafkaException,
        position: dict[str, Any] | None,
        data: bytes,
        key: bytes | None,
    ) -> None:
        """Refused locally, e.g. larger than message.max.bytes: a poison record."""
        poison = PoisonRecord(f"{len(data)} bytes refused by the producer: {exc}")
        self._dead_letter(dlq, poison, position, None, key)

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
            self._send(batch)
            if self.store is not None:
                self.store.save(self.producer, batch.state)
            self.producer.commit_transaction(60)
        except BaseException:
            self.producer.abort_transaction(60)
            raise
        self._check_deliveries()
        self._stored_state = batch.state
        self.progress.checkpoints += 1
        if self._unacked_since is not None:
            self._m_batch.observe(time.perf_counter() - self._unacked_since)
            self._unacked_since = None
        self._m_lag.set(0)
        self._report()

    # -- acknowledgements and checkpoints -----------------------------------------------

    def _check_deliveries(self) -> None:
        """DeliveryError for the first failed delivery reported so far."""
        if not self.reports.errors:
            return
        topic, error = self.reports.errors[0]
        if self.store is not None and topic == self.store.topic:
            raise DeliveryError(
                f"source {self._stage!r}: a checkpoint was not stored in {topic}: {error}"
            )
        raise DeliveryError(
            f"source {self._stage!r}: the broker did not acknowledge "
            f"{len(self.reports.errors)} message(s), the first to {topic}: {error}; nothing "
            "past the last checkpoint is stored, a restart sends them again"
        )

    def _barrier(self) -> None:
        """Wait until every message produced so far is acknowledged (or failed: raise)."""
        while self.producer.flush(1.0) > 0:
            self._check_deliveries()
        self._check_deliveries()

    def _advance(self, *, block: bool) -> None:
        """Checkpoint the last batch produced, behind a barrier, at most every interval
        (``block``: now, and wait until the checkpoint itself is acknowledged). Delivery
        reports are served at most every ``POLL_INTERVAL`` (always when ``block``)."""
        now = time.monotonic()
        if block or now - self._last_poll >= POLL_INTERVAL:
            self.producer.poll(0)
            self._last_poll = now
        self._check_deliveries()
        since = now - self._last_checkpoint
        # due after an interval; waited for only when nothing is outstanding anyway (a source
        # that reads between bursts), or after FORCE_AFTER intervals (one producing nonstop)
        due = block or (
            since >= self.checkpoint_interval
            and (len(self.producer) == 0 or since >= self.checkpoint_interval * FORCE_AFTER)
        )
        state = self._produced_state
        if due and state is not None and state != self._stored_state:
            self._barrier()
            if self._unacked_since is not None:
                self._m_batch.observe(time.perf_counter() - self._unacked_since)
                self._unacked_since = None
            if self.store is not None:
                self.store.save(self.producer, state)
                self.progress.checkpoints += 1
            self._stored_state = state
            self.watch.progress()
            faults.current().end("broker_unreachable")
            self._last_checkpoint = now
        if block:
            self._barrier()  # the checkpoint itself is acknowledged too
        self._m_lag.set(now - self._last_checkpoint)
        self._report()

    def _drain(self) -> None:
        """Wait for every outstanding delivery, then store the last state."""
        self._advance(block=True)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
