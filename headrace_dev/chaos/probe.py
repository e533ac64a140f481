"""What the chaos runner watches: the pipeline's progress in Kafka, and memory per process.

``Progress.read()`` sums, over the pipeline's topics and consumer groups, the topics' high
watermarks (what sources and stages wrote) and the groups' committed offsets (what stages and
sinks finished), and the lag (high watermark - committed) of every group. A fault is
*recovered* when, after it started, the part of the pipeline it hit progressed again or has
nothing left to do. Reading fails while the broker is down: ``read()`` then returns None.

The Kafka clients live in a child process (``ProbeProcess``): librdkafka's admin client once
failed an assertion (``rd_kafka_enq_once_del_source_return: eonce->refcnt > 0``) during a
broker restart and aborted the whole runner, leaving the round's pipeline running. Now such
an abort ends only the child; that reading is None (``last_error`` says why) and the next
one starts a new child.

``RssSampler`` keeps the peak resident memory (``VmHWM`` of ``/proc/<pid>/status``) of every
pipeline process by name, across restarts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = ["Progress", "RssSampler", "Snapshot"]

#: longest a reading may take in the child before it is given up (and the child replaced)
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Snapshot:
    """One reading: per topic the summed high watermark; per group (committed, lag)."""

    topics: Mapping[str, int]
    groups: Mapping[str, tuple[int, int]]

    def advanced(self, earlier: Snapshot, topics: Iterable[str], groups: Iterable[str]) -> bool:
        """True when one of ``topics`` grew or one of ``groups`` committed more than in
        ``earlier`` (only what both readings know is compared)."""
        return any(
            t in earlier.topics and self.topics.get(t, 0) > earlier.topics[t] for t in topics
        ) or any(
            g in earlier.groups and g in self.groups and self.groups[g][0] > earlier.groups[g][0]
            for g in groups
        )

    def idle(self, groups: Iterable[str]) -> bool:
        """True when every one of ``groups`` is known and has no lag."""
        return all(g in self.groups and self.groups[g][1] == 0 for g in groups)


@dataclass
class Progress:
    """Reads ``Snapshot``s of the topics named ``prefix``* and groups named ``group_prefixes``*,
    in a child process (see the module doc)."""

    bootstrap: str
    prefix: str
    group_prefixes: tuple[str, ...]
    last_error: str | None = None
    _child: Any = field(default=None, repr=False)
    _conn: Connection | None = field(default=None, repr=False)

    def read(self) -> Snapshot | None:
        """A snapshot now, or None when Kafka does not answer within a few seconds or the
        child died (the reason is kept in ``last_error``)."""
        try:
            conn = self._connection()
            conn.send("read")
            if not conn.poll(READ_TIMEOUT_S):
                raise TimeoutError(f"no answer in {READ_TIMEOUT_S:g}s")
            snap, error = conn.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            code = self._child.exitcode if self._child is not None else None
            self.close()
            self.last_error = f"the Kafka probe process failed ({exc}; exit code {code})"
            return None
        self.last_error = error
        return snap  # type: ignore[no-any-return]

    def _connection(self) -> Connection:
        if self._conn is None or self._child is None or not self._child.is_alive():
            self.close()
            ctx = multiprocessing.get_context("spawn")
            ours, theirs = ctx.Pipe()
            reader = KafkaReader(self.bootstrap, self.prefix, self.group_prefixes)
            self._child = ctx.Process(target=_serve, args=(reader, theirs), daemon=True)
            self._child.start()
            theirs.close()
            self._conn = ours
        return self._conn

    def close(self) -> None:
        """Stop the child (a new one starts on the next ``read``)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._child is not None:
            self._child.join(5)
            if self._child.is_alive():
                self._child.kill()
                self._child.join(5)
            self._child = None


def _serve(reader: KafkaReader, conn: Connection) -> None:
    """The child's loop: answer each "read" with (snapshot or None, error or None)."""
    try:
        while conn.recv() == "read":
            snap = reader.read()
            conn.send((snap, reader.last_error))
    except EOFError:
        pass
    finally:
        reader.close()


@dataclass
class KafkaReader:
    """What ``Progress`` does, in the process it runs in (the probe's child)."""

    bootstrap: str
    prefix: str
    group_prefixes: tuple[str, ...]
    last_error: str | None = None
    _admin: Any = field(default=None, repr=False)
    _consumer: Any = field(default=None, repr=False)

    def _clients(self) -> tuple[Any, Any]:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            conf: dict[str, str | int | float | bool] = {
                "bootstrap.servers": self.bootstrap,
                "socket.timeout.ms": 5000,
                "log_level": 0,  # a broker that is down is expected here, not news
            }
            self._admin = AdminClient(conf)
            self._consumer = Consumer({**conf, "group.id": "headrace-chaos-probe"})
        return self._admin, self._consumer

    def read(self) -> Snapshot | None:
        """A snapshot now, or None when Kafka does not answer within a few seconds (the
        reason is kept in ``last_error``)."""
        try:
            snap = self._read()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        self.last_error = None
        return snap

    def _read(self) -> Snapshot:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        admin, consumer = self._clients()
        meta = admin.list_topics(timeout=5)
        highs: dict[tuple[str, int], int] = {}
        topics: dict[str, int] = {}
        for name, tmeta in meta.topics.items():
            if not name.startswith(self.prefix) or name.endswith(".dlq"):
                continue
            total = 0
            for p in tmeta.partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)
                highs[(name, p)] = high
                total += high
            topics[name] = total
        listed = admin.list_consumer_groups(request_timeout=5).result()
        names = [g.group_id for g in listed.valid if g.group_id.startswith(self.group_prefixes)]
        groups: dict[str, tuple[int, int]] = {}
        for name in names:
            fut = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(name)], request_timeout=5
            )[name]
            try:
                listed_offsets = fut.result().topic_partitions
            except Exception as exc:  # its coordinator is loading after a restart
                self.last_error = f"group {name}: {type(exc).__name__}: {exc}"
                continue  # unknown for now: left out of this reading
            committed = lag = 0
            for tp in listed_offsets:
                if tp.offset < 0 or (tp.topic, tp.partition) not in highs:
                    continue
                committed += tp.offset
                lag += max(0, highs[(tp.topic, tp.partition)] - tp.offset)
            groups[name] = (committed, lag)
        return Snapshot(topics, groups)

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()


@dataclass
class RssSampler:
    """Peak RSS in bytes per process name (the max of ``VmHWM`` over its pids)."""

    peaks: dict[str, int] = field(default_factory=dict)

    def sample(self, pids: Mapping[str, int]) -> None:
        for name, pid in pids.items():
            hwm = _vm_hwm(pid)
            if hwm is not None and hwm > self.peaks.get(name, 0):
                self.peaks[name] = hwm


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
