"""The sink runner: consume one topic, batch, write, and commit only what was written.

One thread does everything (poll, decode, write, commit, rebalance callbacks, which
confluent-kafka runs inside ``consume``). The loop:

1. ``consume`` up to the batch's free room, waiting at most the batch's remaining linger;
2. when the batch is full (count or bytes) or lingered long enough, ``flush``: decode (bad
   bytes: dead letter), ``writer.write`` (retriable errors: pause the partitions, back off
   with jitter, retry the same batch; the partitions resume after it is written), dead-letter
   the rejected records, wait for the dead letters' delivery, then commit each partition's
   last offset + 1 (or the consumer's position past a transaction's commit marker, see
   ``_ends``), synchronously;
3. on SIGTERM/``stop()``: flush, commit, close (leave the group).

While it backs off, the runner keeps calling ``consume`` on the paused partitions (in slices of
at most ``POLL_SLICE`` seconds) instead of sleeping: the group does not evict it for
exceeding ``max.poll.interval.ms`` during a long outage, and rebalances are served. A
partition revoked or lost meanwhile takes its records out of the batch in hand (the next
owner reads them again); partitions assigned meanwhile are paused too, and a message that
still arrives is kept for the next batch.

Watchdog (``stall``, for ``headrace.watchdog``): progress is a committed batch; work is
pending while a batch is in hand or the writer is being opened, so a sink that reads nothing
is idle, never stalled. Retried writes and opens are recorded as faults
(``headrace.faults``: ``throttled`` when the error says so, else ``database_unavailable``)
until they succeed; a successful commit ends a ``broker_unreachable`` fault.

Guarantee: an offset is committed only after every record before it was written or
delivered to ``<topic>.dlq``. A ``FatalSinkError`` stops the runner without committing the
batch in hand. Revocation flushes before the partitions go; a lost assignment drops the
batch uncommitted (the new owner reads it again; writes are idempotent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from connectors.backoff import Backoff
from connectors.batcher import Batch
from connectors.records import FatalSinkError, SinkRecord, SinkWriter, WriteOutcome
from connectors.sinkmetrics import SinkMetrics
from headrace import faults
from headrace.dlq import DeadLetter, DeadLetterWriter, LetterProducer
from headrace.errors import RetriableError, WedgedError
from headrace.watchdog import ProgressClock, Stall, deadline_call
from schemas import RecordCodec

__all__ = ["POLL_SLICE", "Consumer", "DeadLetterProducer", "SinkRunner"]

log = logging.getLogger(__name__)

#: librdkafka's "no offset" (``confluent_kafka.OFFSET_INVALID``)
OFFSET_INVALID = -1001

#: longest single ``consume`` call while backing off (well below max.poll.interval.ms)
POLL_SLICE = 1.0


class _PartitionsGone(Exception):
    """Partitions were revoked or lost while the batch waited to be written."""

    def __init__(self, partitions: set[int]) -> None:
        super().__init__(f"partitions {sorted(partitions)} were revoked or lost")
        self.partitions = partitions


class Consumer(Protocol):
    """The part of ``confluent_kafka.Consumer`` the runner uses."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...
    def commit(self, *, offsets: list[Any], asynchronous: bool) -> Any: ...
    def position(self, partitions: list[Any]) -> list[Any]: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def assignment(self) -> list[Any]: ...
    def close(self) -> None: ...


class DeadLetterProducer(LetterProducer, Protocol):
    """What the runner needs of its dead-letter producer: sending, plus ``flush``."""

    def flush(self, timeout: float = ...) -> int: ...


class SinkRunner:
    """Runs one ``SinkWriter`` against one topic until ``stop()`` or a fatal error."""

    def __init__(
        self,
        *,
        name: str,
        topic: str,
        consumer: Consumer,
        writer: SinkWriter,
        producer: DeadLetterProducer,
        metrics: SinkMetrics,
        batch_size: int,
        batch_bytes: int,
        linger: float,
        backoff: Backoff | None = None,
        make_offset: Callable[[str, int, int], Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        ensure_dlq_topic: Callable[[], None] | None = None,
        revoke_deadline: float = 30.0,
        codec: RecordCodec | None = None,
        commit_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.topic = topic
        self._consumer = consumer
        self._writer = writer
        self._producer = producer
        self._metrics = metrics
        self._batch: Batch[Any] = Batch(batch_size, batch_bytes, linger, clock)
        self._backoff = backoff or Backoff()
        self._make_offset = make_offset or _topic_partition
        self._sleep = sleep
        self._clock = clock
        self._ensure_dlq = ensure_dlq_topic
        self._dlq_ready = False
        self._revoke_deadline = revoke_deadline
        self._codec = codec or RecordCodec()
        self._commit_timeout = commit_timeout
        self._wedged = False
        self._letters = DeadLetterWriter(producer, on_sent=lambda _l: metrics.dead_letter())
        self._delivery_errors: list[str] = []
        self._stopping = False
        #: while backing off: the paused partitions, partitions gone, messages kept for later
        self._backing_off = False
        self._paused: list[Any] = []
        self._gone: set[int] = set()
        self._held: list[Any] = []
        #: per partition, the offset of the last record ``consume`` returned (see ``_ends``)
        self._read_to: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        #: perf_counter() when the first message arrived (benchmarks measure from there)
        self.first_read: float | None = None
        self.last_commit = 0.0
        #: the watchdog's view: progress is a committed batch (see ``stall``)
        self.progress = ProgressClock()
        self._opening = False

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to flush, commit and leave. Safe from a signal handler."""
        self._stopping = True

    def pending(self) -> str | None:
        """The work waiting now, in words (None: idle). Any thread (reads are racy but
        harmless: the watchdog asks again a second later)."""
        if self._opening:
            return "its destination could not be opened"
        records = list(self._batch.items)
        if not records:
            return None
        parts = ",".join(str(p) for p in sorted({r.partition for r in records}))
        return f"{len(records):,} records are pending on {self.topic}[{parts}]"

    def stall(self) -> Stall | None:
        """For ``headrace.watchdog.Watchdog``: since when a batch has been waiting to be
        committed (or the writer to open), or None."""
        return self.progress.stall(self.pending())

    def run(self, max_idle_polls: int | None = None) -> None:
        """Consume until ``stop()``; ``max_idle_polls`` (tests, benchmarks) also ends it after
        that many consecutive empty polls, once something was read and nothing is left."""
        self._open_writer()
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        idle = 0
        started = False
        try:
            while not self._stopping:
                room = max(1, self._batch.max_records - len(self._batch))
                timeout = min(0.5, self._batch.remaining_linger())
                messages = self._consume(room, timeout)
                for msg in messages:
                    # batch_bytes bounds a batch: write what is there before it would pass
                    # it (a single record larger than batch_bytes goes alone)
                    if self._batch.items and (
                        self._batch.bytes + _message_size(msg) > self._batch.max_bytes
                    ):
                        if not self._flush_or_give_up():
                            return
                    self._add(msg)
                if self._batch.due() and not self._flush_or_give_up():
                    return
                if messages:
                    started = True
                idle = 0 if messages or len(self._batch) or not started else idle + 1
                if max_idle_polls is not None and idle >= max_idle_polls:
                    break
            self._flush_or_give_up()
        finally:
            if not self._wedged:  # a wedged client would block close() as well
                self._close_consumer()
            self._writer.close()

    def _consume(self, num_messages: int, timeout: float) -> list[Any]:
        """``consumer.consume``, noting each partition's last record read (``_read_to``)."""
        messages = self._consumer.consume(num_messages=num_messages, timeout=timeout)
        for msg in messages:
            if msg.error() is None:
                self._read_to[msg.partition()] = msg.offset()
        return messages

    def _close_consumer(self) -> None:
        """``consumer.close()`` (leaves the group), bounded: it waits on the coordinator,
        which a broker outage can make wait for good. Past ``commit_timeout`` the process
        goes on exiting; the group evicts the member after its session timeout."""
        try:
            deadline_call(
                self._consumer.close,
                self._commit_timeout,
                name=f"sink-{self.name}-close",
                wedged=f"closing the consumer did not return in {self._commit_timeout:g}s",
            )
        except WedgedError as exc:
            self._wedged = True
            log.warning("sink %r: %s; exiting without leaving the group", self.name, exc)

    def _flush_or_give_up(self) -> bool:
        """Flush; when stopping while the destination is down, leave the batch unwritten
        and uncommitted (it is read again on restart) and return False."""
        try:
            self.flush()
        except RetriableError as exc:
            if not self._stopping:
                raise
            log.warning(
                "sink %r: stopping before the batch could be written (%s); it is not "
                "committed and will be read again",
                self.name,
                exc,
            )
            return False
        return True

    def _open_writer(self) -> None:
        """``writer.open()``, waiting out a destination that is not up yet."""
        attempt = 0
        self._opening = True
        try:
            self._open_with_retry(attempt)
        finally:
            self._opening = False

    def _open_with_retry(self, attempt: int) -> None:
        tracker = faults.current()
        while True:
            began = (time.monotonic(), time.time())
            try:
                self._writer.open()
                tracker.end("database_unavailable")
                return
            except RetriableError as exc:
                tracker.begin(_fault_of(exc), since=began)
                if self._stopping:
                    raise
                wait = self._backoff.delay(attempt, exc.retry_after)
                attempt += 1
                log.warning("sink %r: cannot open (%s); retry in %.1fs", self.name, exc, wait)
                self._sleep(wait)

    # -- rebalance callbacks (run inside consume(), on this thread) -------------------------

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        log.info("sink %r: assigned %d partition(s) of %r", self.name, len(partitions), self.topic)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        """Write and commit what was read from the partitions before they go; while already
        backing off (called from the backoff's ``consume``), give their records up instead."""
        if self._backing_off:
            self._give_up(partitions, "revoked")
            return
        try:
            self.flush(deadline=self._clock() + self._revoke_deadline, poll=False)
        except RetriableError as exc:
            log.warning(
                "sink %r: revoked before the batch was written (%s); the next owner reads it again",
                self.name,
                exc,
            )
            self._batch.take()
        self._forget(partitions)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._backing_off:
            self._give_up(partitions, "lost")
            return
        log.warning(
            "sink %r: lost %d partition(s); their unwritten records are read again by "
            "the next owner",
            self.name,
            len(partitions),
        )
        self._batch.take()
        self._forget(partitions)

    def _forget(self, partitions: list[Any]) -> None:
        """Drop what was read from partitions that went (a new assignment reads afresh)."""
        for tp in partitions:
            self._read_to.pop(_partition_number(tp), None)

    def _give_up(self, partitions: list[Any], how: str) -> None:
        """Remember ``partitions`` as gone during a backoff; the write loop drops their
        records from the batch (uncommitted: the next owner reads them again)."""
        numbers = {_partition_number(p) for p in partitions}
        self._gone |= numbers
        self._forget(partitions)
        self._held = [m for m in self._held if m.partition() not in numbers]
        self._paused = [p for p in self._paused if _partition_number(p) not in numbers]
        log.warning(
            "sink %r: partitions %s %s while waiting to write; their unwritten records are "
            "read again by the next owner",
            self.name,
            sorted(numbers),
            how,
        )

    # -- batching and writing ---------------------------------------------------------------

    def _add(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if getattr(err, "fatal", lambda: False)():
                raise FatalSinkError(f"sink {self.name!r}: Kafka consumer failed: {err}")
            log.debug("sink %r: consumer event %s", self.name, err)
            return
        raw = msg.value()
        record = SinkRecord(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            None,
            raw,
            _timestamp(msg),
        )
        if self.first_read is None:
            self.first_read = time.perf_counter()
        self._batch.add(record, record.size)

    def flush(self, deadline: float | None = None, poll: bool = True) -> None:
        """Write the batch (retrying), dead-letter its rejects, then commit it.

        ``poll``: keep polling the paused consumer while backing off (not from inside a
        rebalance callback, where ``consume`` must not be called; there it sleeps).
        Raises ``FatalSinkError`` (nothing committed), or ``RetriableError`` when ``deadline``
        passes before the write succeeded (nothing committed; the batch is kept).
        """
        while self._batch.items:
            try:
                self._flush_batch(deadline, poll)
            except _PartitionsGone as gone:
                self._drop_partitions(gone.partitions)
                continue
            break
        held, self._held = self._held, []
        for msg in held:
            self._add(msg)

    def _drop_partitions(self, partitions: set[int]) -> None:
        kept = [r for r in self._batch.take() if r.partition not in partitions]
        for record in kept:
            self._batch.add(record, record.size)

    def _flush_batch(self, deadline: float | None, poll: bool) -> None:
        records: list[SinkRecord] = self._batch.items
        started = self._clock()
        good, letters = self._decode(records)
        outcome = self._write_with_retry(good, deadline, poll)
        rejected = outcome.rejected
        self._metrics.visible(r.timestamp_ms for i, r in enumerate(good) if i not in rejected)
        for index, reason in sorted(outcome.rejected.items()):
            letters.append((good[index], reason))
        for record, reason in letters:
            self._dead_letter(record, reason)
        self._await_dead_letters()
        self._metrics.records(outcome.counts)
        self._metrics.batch(len(records), self._clock() - started)
        self._commit(records)
        self._batch.take()

    def _decode(
        self, records: list[SinkRecord]
    ) -> tuple[list[SinkRecord], list[tuple[SinkRecord, str]]]:
        good: list[SinkRecord] = []
        bad: list[tuple[SinkRecord, str]] = []
        for record in records:
            try:
                record.value = self._codec.decode_value(record.raw)
            except ValueError as exc:
                bad.append((record, f"cannot decode the value: {exc}"))
                continue
            good.append(record)
        return good, bad

    def _write_with_retry(
        self, batch: Sequence[SinkRecord], deadline: float | None, poll: bool
    ) -> WriteOutcome:
        if not batch:
            return WriteOutcome()
        attempt = 0
        self._gone = set()
        tracker = faults.current()
        fault: faults.Fault | None = None
        try:
            while True:
                # a fault began when the call that failed began (a server selection timeout
                # takes seconds before it says so)
                began = (time.monotonic(), time.time())
                try:
                    outcome = self._writer.write(batch)
                    if fault is not None:
                        tracker.end(fault)
                    return outcome
                except RetriableError as exc:
                    if fault is not None and _fault_of(exc) != fault:
                        tracker.end(fault)  # e.g. throttled now, no longer unavailable
                    fault = _fault_of(exc)
                    tracker.begin(fault, since=began)
                    wait = self._backoff.delay(attempt, exc.retry_after)
                    attempt += 1
                    self._metrics.retry("retriable")
                    if self._stopping or (deadline is not None and self._clock() + wait > deadline):
                        raise
                    self._pause_assigned()
                    log.warning(
                        "sink %r: write failed (%s); retry %d in %.1fs",
                        self.name,
                        exc,
                        attempt,
                        wait,
                    )
                    if poll:
                        self._wait_polling(wait)
                    else:
                        self._sleep(wait)
        finally:
            if self._paused:
                self._consumer.resume(self._paused)
                self._paused = []

    def _pause_assigned(self) -> None:
        """Pause every assigned partition not paused yet (new ones arrive in rebalances)."""
        known = {_partition_number(p) for p in self._paused}
        new = [p for p in self._consumer.assignment() if _partition_number(p) not in known]
        if new:
            self._consumer.pause(new)
            self._paused.extend(new)

    def _wait_polling(self, seconds: float) -> None:
        """Wait ``seconds`` inside ``consume`` on the paused partitions (see the module
        docstring); raises ``_PartitionsGone`` when a rebalance took partitions away."""
        end = self._clock() + seconds
        self._backing_off = True
        try:
            while not self._stopping:
                left = end - self._clock()
                if left <= 0:
                    break
                messages = self._consume(self._batch.max_records, min(left, POLL_SLICE))
                self._held.extend(messages)
                if self._gone:
                    break
                self._pause_assigned()
        finally:
            self._backing_off = False
        if self._gone:
            gone, self._gone = self._gone, set()
            raise _PartitionsGone(gone)

    def _dead_letter(self, record: SinkRecord, reason: str) -> None:
        if self._ensure_dlq is not None and not self._dlq_ready:
            self._ensure_dlq()
            self._dlq_ready = True
        self._letters.send(
            DeadLetter(
                topic=record.topic,
                stage=self.name,
                error_class="PoisonRecord",
                message=reason,
                position=record.position,
                key=record.key,
                value=record.raw,
                timestamp_ms=record.timestamp_ms,
            )
        )

    def _await_dead_letters(self) -> None:
        if not self._dlq_ready and self._ensure_dlq is not None:
            return
        while self._producer.flush(5.0) > 0:
            log.warning("sink %r: waiting for dead letters to be delivered", self.name)
        if self._delivery_errors:
            raise FatalSinkError(
                f"sink {self.name!r}: dead letters to {self.topic}.dlq were not delivered "
                f"({self._delivery_errors[0]}); nothing after them is committed"
            )

    def _commit(self, records: list[SinkRecord]) -> None:
        last: dict[int, int] = {}
        for record in records:
            if record.offset > last.get(record.partition, -1):
                last[record.partition] = record.offset
        ends = self._ends(last)
        offsets = [self._make_offset(self.topic, p, ends[p]) for p in sorted(ends)]
        try:
            self._bounded_commit(offsets)
        except WedgedError:
            raise
        except Exception as exc:  # written already: a failed commit only means a replay
            log.warning(
                "sink %r: commit failed (%s); those records will be written again "
                "(idempotently) after a restart or rebalance",
                self.name,
                exc,
            )
            return
        self.committed.update(ends)
        self.last_commit = time.perf_counter()
        self.progress.progress()
        faults.current().end("broker_unreachable")
        self._metrics.committed()

    def _ends(self, last: dict[int, int]) -> dict[int, int]:
        """The offset to commit per partition, given the batch's ``last`` record of each:
        the next one, or the consumer's position when that is further and the batch holds the
        last record read from the partition. Only a transaction's commit marker (or records
        of an aborted transaction) lie between: a topic written in Kafka transactions ends
        with a marker, and committing only past the last record would leave a lag of 1 for
        good (``run --until-idle`` would never see the sink caught up)."""
        ends = {p: o + 1 for p, o in last.items()}
        drained = [p for p, o in last.items() if self._read_to.get(p) == o]
        if drained:
            asked = [self._make_offset(self.topic, p, OFFSET_INVALID) for p in sorted(drained)]
            for tp in self._consumer.position(asked):
                p, at = _partition_number(tp), int(tp.offset)
                if p in ends and at > ends[p]:
                    ends[p] = at
        return ends

    def _bounded_commit(self, offsets: list[Any]) -> None:
        """``commit(asynchronous=False)`` with a deadline: librdkafka's synchronous commit has
        none, and during a broker outage it was seen to block for over ten minutes while
        the sink reported "idle, lag 0". Past ``commit_timeout`` seconds: ``WedgedError``
        (the process exits 1 and its supervisor restarts it; what was written is written
        again after the restart, idempotently)."""
        try:
            deadline_call(
                lambda: self._consumer.commit(offsets=offsets, asynchronous=False),
                self._commit_timeout,
                name=f"sink-{self.name}-commit",
                wedged=(
                    f"sink {self.name!r}: a Kafka offset commit has not returned in "
                    f"{self._commit_timeout:g}s (is the group coordinator reachable?); exiting "
                    "so the supervisor restarts the sink (the batch was written; a restart "
                    "writes it again, idempotently)"
                ),
            )
        except WedgedError:
            self._wedged = True
            raise

    def on_delivery(self, err: Any, _msg: Any) -> None:
        """Producer delivery callback for dead letters (pass as ``on_delivery``)."""
        if err is not None:
            self._delivery_errors.append(str(err))

    def on_stats(self, stats_json: str) -> None:
        """Consumer ``stats_cb``: publish the consumer lag of the topic."""
        try:
            stats = orjson.loads(stats_json)
            parts = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
            lag = sum(max(0, int(p.get("consumer_lag", 0))) for k, p in parts.items() if k != "-1")
        except (ValueError, AttributeError, TypeError):
            return
        self._metrics.lag(self.topic, lag)


def _fault_of(exc: RetriableError) -> faults.Fault:
    """``throttled`` when the writer's error says it was throttled, else
    ``database_unavailable``."""
    return "throttled" if "throttl" in str(exc).lower() else "database_unavailable"


def _partition_number(tp: Any) -> int:
    """The partition number of a ``TopicPartition`` (or of a bare number, in tests)."""
    return int(getattr(tp, "partition", tp))


def _timestamp(msg: Any) -> int | None:
    kind, value = msg.timestamp()
    return int(value) if kind and value >= 0 else None


def _topic_partition(topic: str, partition: int, offset: int) -> Any:
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition, offset)


def _message_size(msg: Any) -> int:
    """The bytes a consumed message adds to a batch (``SinkRecord.size``; 0 for an event)."""
    if msg.error() is not None:
        return 0
    return len(msg.key() or b"") + len(msg.value() or b"")
