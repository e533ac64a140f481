"""``type: mysql_cdc``: every insert, update and delete of MySQL/MariaDB tables, from the binlog,
after a consistent snapshot.

Snapshot (``snapshot: initial`` or ``when_needed`` with no checkpoint): one
``START TRANSACTION WITH CONSISTENT SNAPSHOT`` per pass, its binlog position read under it
(MariaDB: the ``binlog_snapshot_file``/``binlog_snapshot_position`` status of that very
transaction, no lock at all; MySQL: ``FLUSH TABLES WITH READ LOCK`` held only while the
transaction starts and ``SHOW MASTER STATUS`` is read, as Debezium does), then each table in
primary-key order, ``chunk_size`` rows per batch, as ``op: r`` records. The checkpoint holds
the keys read so far; a restart mid-snapshot continues after the last key in a new
transaction, and ``mysql_cdc_position.Seam`` keeps the seam exact across them. The state at
the end of the snapshot starts the stream.

Stream: the binlog from the seam's position, row events of the captured tables grouped by
transaction: a batch ends only at a commit, so its checkpoint (the position after that commit)
is a transaction boundary and a restart never re-reads half a transaction. The reader is one
blocking binlog connection with a server heartbeat every ``linger``: a batch is handed on at
the first commit after ``batch_size`` changes or after its oldest change waited ``linger``,
and a pass ends at a heartbeat (the server had nothing to send for ``linger``: the source is
caught up) between transactions, once the pass is ``linger`` old (heartbeats sent while no
pass read come first and are passed over). The connection stays open across passes
(``close`` ends it), so a pass after the runner's pause continues where the last stopped,
without reconnecting; a pass left mid-transaction (the runner stopped, an error) closes it
and the next one reconnects from the last commit. A DDL statement on
a captured table is followed: the table's columns are read again and the checkpoint moves past
the statement, so the rows after it are typed with the new columns (added, dropped, renamed,
retyped). What cannot be followed stops the source naming the statement: the table dropped,
truncated or renamed, its primary key changed. A source behind by several changes reads rows
whose columns differ from the table's current ones: those are typed from their binlog table
map (``binlog_row_metadata=FULL``), else the source stops; never misaligned columns.
A lost connection ends the pass; the next pass reconnects from the last position after a
backoff (0.5 s doubling to 30 s), recorded as a ``database_unavailable`` fault
(``headrace.faults``) until a pass reads the binlog to its end again. A checkpoint whose binlog
file was purged stops the source at start (``snapshot: when_needed``: re-snapshots instead).

Kafka headers of every change record: ``headrace.binlog.position`` (``file:pos``, the end of
its row event; a snapshot read: the position of its consistent snapshot) and, when its
transaction has one, ``headrace.binlog.gtid`` (the transaction id; none on snapshot reads).
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import orjson

from headrace import faults
from headrace.errors import HeadraceError
from producers.batch import Batch, Poison, Rows
from producers.mysql_cdc_catalog import (
    Table,
    connect,
    connect_bulk,
    is_mariadb,
    load_table,
    load_tables,
)
from producers.mysql_cdc_metrics import CDCMetrics
from producers.mysql_cdc_position import Position, Seam, TableProgress, position_of
from producers.mysql_cdc_rows import fast_rows
from producers.mysql_cdc_values import (
    Converter,
    binlog_converters,
    convert_row,
    fix_binlog_times,
    row_converter,
    time_columns,
)
from schemas import encode_key
from schemas.jsoncodec import dumps

__all__ = [
    "POSITION_HEADER",
    "TXID_HEADER",
    "CDCSource",
    "PositionLost",
    "SchemaChanged",
    "change_headers",
]

log = logging.getLogger(__name__)
STATE_VERSION = 1
#: seconds a blocking binlog read may wait before the connection counts as lost (the server's
#: heartbeats, every ``linger``, keep a live one from waiting that long)
READ_TIMEOUT = 60


class PositionLost(HeadraceError):
    """The checkpointed binlog position is no longer on the server (binlog purged)."""


class SchemaChanged(HeadraceError):
    """A DDL statement changed a captured table mid-stream."""


#: Kafka header of every change record: the binlog position ``file:pos`` of the change (the end
#: of its row event; a snapshot read: the position its consistent snapshot was taken at)
POSITION_HEADER = "headrace.binlog.position"
#: Kafka header of a streamed change whose transaction has a GTID (MariaDB ``0-1-42``, MySQL
#: ``uuid:n``): that GTID; absent on snapshot reads and on servers without GTIDs
TXID_HEADER = "headrace.binlog.gtid"


def change_headers(position: Position, gtid: str | None) -> list[tuple[str, bytes]]:
    """The Kafka headers of the change records at ``position`` in transaction ``gtid`` (one
    list, shared by every record of a row event or snapshot chunk)."""
    headers = [(POSITION_HEADER, f"{position[0]}:{position[1]}".encode())]
    if gtid:
        headers.append((TXID_HEADER, gtid.encode()))
    return headers


def record_key(row: dict[str, Any], key: list[str]) -> bytes:
    """The Kafka key of a row: one int or text column as its text, else ``encode_key``
    (the same bytes ``RecordEncoder`` makes for ``key: [...]``)."""
    if len(key) == 1:
        k = row[key[0]]
        if type(k) is int or type(k) is str:
            return str(k).encode()
        return encode_key((k,))
    return encode_key(tuple(row[c] for c in key))


class _Out:
    """A batch under construction: encoded columns, positions for dead letters, poison."""

    def __init__(self) -> None:
        self.keys: list[bytes | None] = []
        self.datas: list[bytes | None] = []
        self.times: list[int | None] = []
        self.where: list[dict[str, Any]] = []
        self.headers: list[list[tuple[str, bytes]] | None] = []
        self.poison: list[Poison] = []
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.datas) + len(self.poison)

    def add(
        self,
        key: bytes,
        value: dict[str, Any] | None,
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
    ) -> None:
        data = None if value is None else dumps(value)
        self.keys.append(key)
        self.datas.append(data)
        self.times.append(ts_ms)
        self.where.append(where)
        self.headers.append(headers)
        self.nbytes += len(data) if data else 0

    def extend(
        self,
        keys: list[bytes],
        values: list[dict[str, Any]],
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """``add`` of each (key, value), all with the same time, position and headers."""
        datas = list(map(dumps, values))  # right-sized: a chunk is held until produced
        n = len(datas)
        self.keys += keys
        self.datas += datas
        self.times += [ts_ms] * n
        self.where += [where] * n
        self.headers += [headers] * n
        self.nbytes += sum(map(len, datas))

    def bad(self, raw: Any, exc: Exception, where: dict[str, Any], key: bytes | None) -> None:
        data = orjson.dumps(raw, default=repr)
        self.poison.append(Poison(data, type(exc).__name__, str(exc), where, key))

    def batch(self, state: dict[str, Any]) -> Batch:
        from producers.encoder import Encoded

        where = self.where
        enc = Encoded(self.keys, self.datas, self.times, nbytes=self.nbytes, headers=self.headers)
        rows = Rows([{} for _ in self.datas], None, where.__getitem__, enc)
        return Batch(rows, state, self.poison)


class CDCSource:
    """One ``mysql_cdc`` source (see the module docstring). ``settings``: PyMySQL connection
    arguments; ``flat``: the newest row as the value and deletes as tombstones, else the
    ``op``/``before``/``after`` envelope; ``linger`` (seconds): the longest a streamed change
    waits in the source for its batch, and the server's heartbeat period (see the module
    docstring)."""

    unit = "changes"

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        *,
        tables: list[str],
        snapshot: str = "initial",
        flat: bool = False,
        chunk_size: int = 10_000,
        batch_size: int = 10_000,
        linger: float = 0.05,
        server_id: int = 0,
        connect_fn: Callable[[dict[str, Any]], Any] = connect,
        stream_fn: Callable[..., Any] | None = None,
        metrics_labels: tuple[str, str, str] | None = None,
        bulk_connect_fn: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.patterns = tables
        self.snapshot_mode = snapshot
        self.flat = flat
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.linger = linger
        #: seconds, monotonic: what ``linger`` is measured with
        self.clock: Callable[[], float] = time.monotonic
        self.server_id = server_id or 5400 + zlib.crc32(name.encode()) % 1000
        self._connect = connect_fn
        #: the snapshot's connection (``connect_bulk``: mysqlclient when installed), unless
        #: a test gave its own ``connect_fn``
        self._connect_bulk = bulk_connect_fn or (
            connect_bulk if connect_fn is connect else connect_fn
        )
        self._stream_fn = stream_fn
        #: the binlog reader a pass ended with, caught up between transactions: the next
        #: pass reads on from it (None: the next pass connects)
        self._live: Any | None = None
        self.tables: dict[str, Table] = {}
        self.progress: dict[str, TableProgress] = {}
        self.phase = "snapshot"
        self.position: Position | None = None
        self.gtid: str | None = None
        self.seam = Seam({})
        #: the last DDL statement followed on each table (for the error of a row that still
        #: does not fit: the schema changed again later)
        self.last_ddl: dict[str, str] = {}
        self._warned_behind: set[str] = set()
        self._failures = 0
        self._mariadb = True
        #: lag and snapshot gauges (``producers.mysql_cdc_metrics``; None labels: none)
        self.metrics = CDCMetrics(metrics_labels)

    # -- lifecycle ------------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        """Load the tables; resume from ``state`` (see ``mysql_cdc_position``); PositionLost
        when its binlog file was purged (unless ``snapshot: when_needed``)."""
        self.close()  # a reader of an earlier position is of no use now
        conn = self._connect(self.settings)
        try:
            self._mariadb = is_mariadb(conn)
            db = self.settings["database"]
            self.tables = {t.qualified: t for t in load_tables(conn, self.name, db, self.patterns)}
            if state and state.get("v") == STATE_VERSION:
                self._resume(conn, state)
            elif self.snapshot_mode == "never":
                self.phase, self.position = "stream", self._head(conn)
            else:
                self.phase = "snapshot"
                self.progress = {t: TableProgress() for t in self.tables}
        finally:
            conn.close()
        self.seam = Seam(self.progress)

    def _resume(self, conn: Any, state: dict[str, Any]) -> None:
        self.phase = str(state["phase"])
        self.gtid = state.get("gtid")
        self.progress = {
            t: TableProgress.from_state(p) for t, p in (state.get("snapshot") or {}).items()
        }
        for t in self.tables:  # a table added to `tables` later: snapshotted (unless never)
            if t not in self.progress and self.snapshot_mode != "never":
                self.progress[t] = TableProgress()
                self.phase = "snapshot"
        needed = (
            Seam(self.progress).start(position_of(state["binlog"])) if state.get("binlog") else None
        )
        if self.phase == "stream":
            self.position = position_of(state["binlog"])
            needed = self.position
        if needed is None:
            return
        logs = self._binlogs(conn)
        if needed[0] not in logs:
            if self.snapshot_mode == "when_needed":
                log.warning(
                    "source %r: binlog %s (checkpointed position %s) was purged; re-snapshotting "
                    "(snapshot: when_needed)",
                    self.name,
                    needed[0],
                    needed[1],
                )
                self.phase, self.position = "snapshot", None
                self.progress = {t: TableProgress() for t in self.tables}
                return
            raise PositionLost(
                f"source {self.name!r}: the checkpointed binlog position {needed[0]}:{needed[1]} "
                f"is gone, the server's binlogs start at {logs[0] if logs else '(none)'} (purged: "
                "expire_logs_days too short or PURGE BINARY LOGS); fix: `headrace produce "
                f"{self.name} --reset` to snapshot again, or set `snapshot: when_needed`"
            )

    @staticmethod
    def _binlogs(conn: Any) -> list[str]:
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            return [str(r[0]) for r in cur.fetchall()]

    @staticmethod
    def _head(conn: Any) -> Position:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        if not row:
            raise HeadraceError("SHOW MASTER STATUS is empty: the server's binlog is off (log_bin)")
        return (str(row[0]), int(row[1]))

    def close(self) -> None:
        """Close the binlog reader held between passes, if any."""
        live, self._live = self._live, None
        if live is not None:
            live.close()

    def state(self) -> dict[str, Any]:
        """The checkpoint state now (see ``mysql_cdc_position``)."""
        return {
            "v": STATE_VERSION,
            "phase": self.phase,
            "binlog": list(self.position) if self.position else None,
            "gtid": self.gtid,
            "snapshot": {t: p.to_state() for t, p in self.progress.items()},
        }

    def batches(self) -> Generator[Batch, None, None]:
        """One pass: the rest of the snapshot, or the binlog until caught up."""
        if self.phase == "snapshot":
            yield from self._snapshot()
            return
        if self._failures:
            time.sleep(min(30.0, 0.5 * 2 ** (self._failures - 1)))
        try:
            yield from self._stream()
            self._failures = 0
            faults.current().end("database_unavailable")  # caught up after a reconnect
        except (OSError, _db_errors()) as exc:
            faults.current().begin("database_unavailable")
            self._failures += 1
            log.warning(
                "source %r: binlog connection lost at %s (%s: %s); reconnecting (attempt %d)",
                self.name,
                self.position,
                type(exc).__name__,
                exc,
                self._failures,
            )

    # -- snapshot -------------------------------------------------------------------------

    def _snapshot(self) -> Generator[Batch, None, None]:
        conn = self._connect_bulk(self.settings)
        try:
            pos = self._begin_snapshot(conn)
            now_ms = int(time.time() * 1000)
            for qualified, table in self.tables.items():
                progress = self.progress[qualified]
                if progress.done:
                    continue
                progress.begin_segment(pos)
                self.metrics.snapshot_started(qualified, self._estimate(conn, table))
                where = {"snapshot": qualified}
                headers = change_headers(pos, None)
                keys = [table.columns.index(c) for c in table.key]
                while True:
                    rows = self._chunk(conn, table, progress.last_key)
                    out = _Out()
                    self._reads(out, table, rows, now_ms, where, headers)
                    if rows:
                        progress.last_key = tuple(rows[-1][i] for i in keys)
                        self.metrics.snapshot_rows(qualified, len(rows))
                    if len(rows) < self.chunk_size:
                        progress.done = True
                    yield out.batch(self.state())
                    if progress.done:
                        break
            with conn.cursor() as cur:
                cur.execute("COMMIT")
        finally:
            conn.close()
        self.seam = Seam(self.progress)
        self.phase, self.position = "stream", self.seam.start(pos)
        yield Batch([], self.state())  # the end of the snapshot is checkpointed too

    @staticmethod
    def _estimate(conn: Any, table: Table) -> int:
        """The server's estimate of the table's rows (InnoDB's TABLE_ROWS: approximate)."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (table.schema, table.name),
            )
            row = cur.fetchone()
        return int(row[0] or 0) if row else 0

    def _binlog_sizes(self) -> list[tuple[str, int]]:
        conn = self._connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW BINARY LOGS")
                return [(str(r[0]), int(r[1])) for r in cur.fetchall()]
        finally:
            conn.close()

    def _begin_snapshot(self, conn: Any) -> Position:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if self._mariadb:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
                return (status["binlog_snapshot_file"], int(status["binlog_snapshot_position"]))
            cur.execute("FLUSH TABLES WITH READ LOCK")
            try:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                pos = self._head(conn)
            finally:
                cur.execute("UNLOCK TABLES")
            return pos

    def _reads(
        self,
        out: _Out,
        table: Table,
        rows: Sequence[Sequence[Any]],
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Append the ``op: r`` records of snapshot ``rows`` (tuples in ``table.columns``
        order): what ``_change`` makes of each row, through ``row_converter`` and one
        ``source`` object shared by the chunk; a row it cannot convert goes through
        ``_change`` (which names the column in its dead letter)."""
        convert = row_converter(table.columns, table.converters)
        key, columns = table.key, table.columns
        source = {"table": table.qualified, **where, "ts_ms": ts_ms}
        afters: list[dict[str, Any]] = []
        for raw in rows:
            try:
                afters.append(convert(raw))
            except Exception:
                self._read_all(out, afters, key, source, ts_ms, where, headers)
                afters = []  # the rows before it went first: records keep the rows' order
                row = dict(zip(columns, raw, strict=True))
                self._change(out, table, "r", None, row, ts_ms, where, headers)
        self._read_all(out, afters, key, source, ts_ms, where, headers)

    def _read_all(
        self,
        out: _Out,
        afters: list[dict[str, Any]],
        key: list[str],
        source: dict[str, Any],
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """The ``op: r`` records of converted rows ``afters``, as ``_emit`` makes them."""
        keys = [record_key(a, key) for a in afters]
        if self.flat:
            out.extend(keys, afters, ts_ms, where, headers)
            return
        values = [{"op": "r", "before": None, "after": a, "source": source} for a in afters]
        out.extend(keys, values, ts_ms, where, headers)

    def _chunk(
        self, conn: Any, table: Table, after: tuple[Any, ...] | None
    ) -> Sequence[Sequence[Any]]:
        """The next ``chunk_size`` rows of ``table`` after key ``after``, in key order, as
        the driver fetches them: tuples in ``table.columns`` order."""
        cols = ", ".join(table.selects.get(c, f"`{c}`") for c in table.columns)
        key = ", ".join(f"`{c}`" for c in table.key)
        sql = f"SELECT {cols} FROM `{table.schema}`.`{table.name}`"  # noqa: S608 - catalog names
        args: tuple[Any, ...] = ()
        if after is not None:
            marks = ", ".join(["%s"] * len(after))
            sql += f" WHERE ({key}) > ({marks})"
            args = after
        sql += f" ORDER BY {key} LIMIT {int(self.chunk_size)}"
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows: Sequence[Sequence[Any]] = cur.fetchall()
            return rows

    # -- records --------------------------------------------------------------------------

    def _change(
        self,
        out: _Out,
        table: Table,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
        converters: dict[str, Converter] | None = None,
    ) -> None:
        """Append the change record(s) of one row change; poison when it cannot be encoded.
        A primary-key update is a delete of the old key and a create of the new one.
        ``converters``: the row's (default: the table's current columns)."""
        conv = table.converters if converters is None else converters
        try:
            b = None if before is None else convert_row(before, conv)
            a = None if after is None else convert_row(after, conv)
        except ValueError as exc:
            out.bad(
                {"table": table.qualified, "op": op, "before": before, "after": after},
                exc,
                where,
                None,
            )
            return
        if op == "u" and b is not None and a is not None:
            old, new = record_key(b, table.key), record_key(a, table.key)
            if old != new:
                self._emit(out, table, "d", b, None, old, ts_ms, where, headers)
                self._emit(out, table, "c", None, a, new, ts_ms, where, headers)
                return
        row = a if a is not None else b
        assert row is not None
        self._emit(out, table, op, b, a, record_key(row, table.key), ts_ms, where, headers)

    def _emit(
        self,
        out: _Out,
        table: Table,
        op: str,
        b: dict[str, Any] | None,
        a: dict[str, Any] | None,
        key: bytes,
        ts_ms: int,
        where: dict[str, Any],
        headers: list[tuple[str, bytes]],
    ) -> None:
        if self.flat:
            out.add(key, a, ts_ms, where, headers)  # a delete: None, a tombstone
            return
        source = {"table": table.qualified, **where, "ts_ms": ts_ms}
        value = {"op": op, "before": b, "after": a, "source": source}
        out.add(key, value, ts_ms, where, headers)

    # -- stream ---------------------------------------------------------------------------

    def _reader(self) -> Any:
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import (
            GtidEvent,
            HeartbeatLogEvent,
            MariadbGtidEvent,
            QueryEvent,
            RotateEvent,
            XidEvent,
        )
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        assert self.position is not None
        events = [
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
            XidEvent,
            QueryEvent,
            RotateEvent,
            MariadbGtidEvent,
            GtidEvent,
            HeartbeatLogEvent,
        ]
        if self._stream_fn is not None:
            return self._stream_fn(self.position)
        return BinLogStreamReader(
            # the library adds keys to the settings; a read timeout (far above the heartbeat)
            # so that a silently dead connection errs instead of waiting for good
            connection_settings={**self.settings, "read_timeout": READ_TIMEOUT},
            server_id=self.server_id,
            log_file=self.position[0],
            log_pos=self.position[1],
            resume_stream=True,
            # blocking: the server sends each event as it is written and, after `linger`
            # without one, a heartbeat (which ends a pass: caught up)
            blocking=True,
            slave_heartbeat=self.linger,
            only_events=events,
            # file/position dump for both servers: with is_mariadb the library (1.0.x) ignores
            # log_pos and starts at the file's beginning unless given a GTID auto_position
            is_mariadb=False,
            freeze_schema=True,
        )

    def _stream(self) -> Generator[Batch, None, None]:
        if self._stream_fn is None:
            self.metrics.binlog_sizes(self._binlog_sizes)
        reader, self._live = self._live or self._reader(), None
        out, pending = _Out(), _Out()
        txn_gtid: str | None = None
        started = self.clock()
        oldest = 0.0  # when the first transaction in `out` was read
        keep = False  # ended caught up between transactions: the next pass reads on from it
        try:
            for ev in reader:
                kind = type(ev).__name__
                if kind == "HeartbeatLogEvent":
                    # nothing to send for `linger`: caught up, unless the pass is younger
                    # than that (heartbeats sent while no pass read wait at the stream's front)
                    if not len(pending) and self.clock() - started >= self.linger:
                        keep = True
                        break
                    continue
                file = str(reader.log_file)
                end = (file, int(ev.packet.log_pos))
                if kind in ("MariadbGtidEvent", "GtidEvent"):
                    txn_gtid = str(ev.gtid)
                elif kind.endswith("RowsEvent"):
                    self._rows(pending, ev, end, txn_gtid)
                elif kind == "XidEvent" or (kind == "QueryEvent" and _query(ev) == "COMMIT"):
                    if not len(out):
                        oldest = self.clock()
                    out = self._commit(out, pending, end, txn_gtid)
                    pending, txn_gtid = _Out(), None  # the next transaction names its own
                    self.metrics.read(end, float(ev.timestamp))
                    if len(out) and (
                        len(out) >= self.batch_size or self.clock() - oldest >= self.linger
                    ):
                        # emptied before the yield: a generator closed there yields no more
                        batch, out = out.batch(self.state()), _Out()
                        yield batch
                elif kind == "QueryEvent" and _query(ev) not in ("BEGIN", ""):
                    followed = self._ddl(ev)
                    out = self._commit(out, pending, end, txn_gtid)  # a DDL commits implicitly
                    pending, txn_gtid = _Out(), None
                    if followed:  # checkpoint past it: a restart reads on with the new columns
                        batch, out = out.batch(self.state()), _Out()
                        yield batch
                elif kind == "RotateEvent" and not len(pending):
                    self.position = (str(ev.next_binlog), int(ev.position))
            # a heartbeat, or the reader ended (a non-blocking reader at the binlog's end)
            self.metrics.caught_up()
        finally:
            if keep:
                self._live = reader
            else:
                reader.close()
            if len(out):
                yield out.batch(self.state())

    def _commit(self, out: _Out, pending: _Out, end: Position, gtid: str | None) -> _Out:
        """``pending`` (one transaction) joins ``out``; the position moves past its commit."""
        out.keys += pending.keys
        out.datas += pending.datas
        out.times += pending.times
        out.where += pending.where
        out.headers += pending.headers
        out.poison += pending.poison
        out.nbytes += pending.nbytes
        self.position, self.gtid = end, gtid
        return out

    def _rows(self, out: _Out, ev: Any, end: Position, gtid: str | None) -> None:
        qualified = f"{ev.schema}.{ev.table}"
        table = self.tables.get(qualified)
        if table is None:
            return
        kind = type(ev).__name__
        ts_ms = int(ev.timestamp) * 1000
        where = {"file": end[0], "pos": end[1], "gtid": gtid}
        headers = change_headers(end, gtid)
        table_times = time_columns(table.converters)
        rows = fast_rows(ev)  # None: the library decodes them (``mysql_cdc_rows``)
        for row in ev.rows if rows is None else rows:
            if kind == "WriteRowsEvent":
                op, before, after = "c", None, _image(row, "values", "none_sources")
            elif kind == "UpdateRowsEvent":
                op = "u"
                before = _image(row, "before_values", "before_none_sources")
                after = _image(row, "after_values", "after_none_sources")
            else:
                op, before, after = "d", _image(row, "values", "none_sources"), None
            image: dict[str, Any] = after if after is not None else before or {}
            converters, times = table.converters, table_times
            if converters.keys() != image.keys():
                converters = self._behind(table, ev, image, end)
                times = time_columns(converters)
            if times:
                for img in (before, after):
                    if img is not None:
                        fix_binlog_times(img, times)
            key_row = before if before is not None else after
            assert key_row is not None
            key = [key_row[c] for c in table.key]  # raw values, as the snapshot kept them
            if self.seam.reflected(qualified, key, end):
                continue
            self._change(out, table, op, before, after, ts_ms, where, headers, converters)

    def _behind(
        self, table: Table, ev: Any, image: dict[str, Any], end: Position
    ) -> dict[str, Converter]:
        """Converters for a row whose columns are not the table's current ones: the table
        changed again after this row (the source is behind by several schema changes). They
        come from the row event's own table map; SchemaChanged when it carries no names and
        character sets (no ``binlog_row_metadata=FULL``) or lacks the primary key."""
        qualified = table.qualified
        found = binlog_converters(list(getattr(ev, "columns", None) or []), table.converters)
        if found is None or found.keys() != image.keys() or not set(table.key) <= found.keys():
            since = self.last_ddl.get(qualified)
            known = f"after {since!r}" if since else "when the source started"
            raise SchemaChanged(
                f"source {self.name!r}: a row of {qualified} at {end[0]}:{end[1]} has columns "
                f"{list(image)}, the table has {table.columns} ({known}), and the binlog's "
                "table map does not describe them (binlog_row_metadata is not FULL, or the "
                "primary key is missing), so the row cannot be typed; restart with "
                f"`headrace produce {self.name} --reset` (re-snapshots)"
            )
        if qualified not in self._warned_behind:
            self._warned_behind.add(qualified)
            log.warning(
                "source %r: rows of %s at %s:%s have columns %s, not the table's current %s "
                "(changed again later): typed from the binlog's table map",
                self.name,
                qualified,
                end[0],
                end[1],
                list(image),
                table.columns,
            )
        return found

    def _ddl(self, ev: Any) -> bool:
        """Follow a DDL statement on a captured table: True when the table's columns were
        read again (ALTER TABLE adding, dropping, renaming or changing columns; CREATE/DROP
        INDEX); SchemaChanged naming the statement when it cannot be followed (the table
        dropped, renamed or truncated, its primary key changed). Statements on other tables:
        False."""
        sql = _query(ev)
        schema = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema or "")
        words = sql.replace("`", " ").replace(".", " ").replace(",", " ").lower().split()
        followed = False
        for qualified, table in list(self.tables.items()):
            named = table.name.lower() in words and (
                schema.lower() == table.schema.lower() or table.schema.lower() in words
            )
            if not named:
                continue
            where = f"{qualified} at {self.position}: {sql[:200]!r}"
            why = _unfollowable(words)
            if why is None:
                try:
                    conn = self._connect(self.settings)
                    try:
                        fresh = load_table(conn, self.name, table.schema, table.name)
                    finally:
                        conn.close()
                except HeadraceError as exc:
                    why = f"the table cannot be read again ({exc})"
                else:
                    if fresh.key != table.key:
                        why = f"its primary key changed from {table.key} to {fresh.key}"
            if why is not None:
                raise SchemaChanged(
                    f"source {self.name!r}: DDL on captured table {where}: {why}, which change "
                    "data capture cannot follow; restart with `headrace produce "
                    f"{self.name} --reset` (re-snapshots) once the change is done"
                )
            log.info(
                "source %r: followed DDL on %s; columns now %s", self.name, where, fresh.columns
            )
            self.tables[qualified] = fresh
            self.last_ddl[qualified] = sql[:200]
            followed = True
        return followed


def _unfollowable(words: list[str]) -> str | None:
    """Why a DDL statement (lower-cased words) on a captured table cannot be followed, or
    None when reading the table's columns again follows it."""
    verb = words[0] if words else ""
    if verb == "truncate" or (verb == "drop" and "table" in words[:3]):
        return "the table was dropped or truncated"
    if verb == "rename":
        return "the table was renamed"
    if verb == "alter" and "rename" in words:
        after = words[words.index("rename") + 1 : words.index("rename") + 2]
        if after not in (["column"], ["index"], ["key"]):
            return "the table was renamed"
    return None


def _image(row: dict[str, Any], values: str, none_sources: str) -> dict[str, Any]:
    """A row image of a binlog row event. ``mysql-replication`` reads an empty SET as None
    (telling it apart only in the row's none sources, as "empty set"): it is ``''`` here, as
    ``SELECT`` and the snapshot give it, not NULL."""
    image: dict[str, Any] = row[values]
    sources = row.get(none_sources)
    if sources:
        empty = [c for c, why in sources.items() if why == "empty set"]
        if empty:
            image = {**image, **dict.fromkeys(empty, "")}
    return image


def _query(ev: Any) -> str:
    q = ev.query
    text = q.decode(errors="replace") if isinstance(q, bytes) else str(q)
    return text.strip().upper() if text.strip().upper() in ("BEGIN", "COMMIT") else text.strip()


def _db_errors() -> type[Exception]:
    import pymysql

    error: type[Exception] = pymysql.err.Error
    return error
