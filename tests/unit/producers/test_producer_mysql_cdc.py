"""mysql_cdc: value typing of every column type, and the snapshot/binlog seam with a fake
binlog (no database)."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from producers.mysql_cdc_catalog import Table
from producers.mysql_cdc_position import Seam, TableProgress
from producers.mysql_cdc_source import CDCSource, SchemaChanged
from producers.mysql_cdc_values import column_converter, convert_row


@pytest.mark.parametrize(
    ("data_type", "column_type", "snapshot_value", "binlog_value", "expected"),
    [
        ("decimal", "decimal(12,2)", Decimal("12.30"), Decimal("12.30"), "12.30"),
        ("int", "int(10) unsigned", 4294967295, 4294967295, 4294967295),
        ("bigint", "bigint(20) unsigned", 2**64 - 1, 2**64 - 1, 2**64 - 1),
        ("tinyint", "tinyint(4)", -5, -5, -5),
        ("year", "year(4)", 2024, 2024, 2024),
        ("bit", "bit(8)", b"\x05", "00000101", 5),  # the binlog library: the bits as text
        ("bit", "bit(12)", b"\x0a\x01", "101000000001", 2561),
        ("double", "double", 1.5, 1.5, 1.5),
        ("float", "float", 0.3333333432674408, 0.3333333432674408, 0.33333334),
        ("float", "float", 0.1, 0.10000000149011612, 0.1),
        ("binary", "binary(4)", b"ab\x00\x00", b"ab", "YWIAAA=="),
        (
            "datetime",
            "datetime(6)",
            datetime(2024, 1, 2, 3, 4, 5, 6),
            datetime(2024, 1, 2, 3, 4, 5, 6),
            "2024-01-02T03:04:05.000006",
        ),
        (
            "timestamp",
            "timestamp",
            datetime(2024, 1, 2, 3, 4, 5),
            datetime(2024, 1, 2, 3, 4, 5),
            "2024-01-02T03:04:05Z",
        ),
        ("date", "date", date(2024, 2, 29), date(2024, 2, 29), "2024-02-29"),
        (
            "time",
            "time",
            timedelta(hours=-1, minutes=-2),
            timedelta(hours=-1, minutes=-2),
            "-01:02:00",
        ),
        ("varchar", "varchar(20)", "héllo", "héllo", "héllo"),
        ("text", "text", "t", b"t", "t"),
        ("blob", "blob", b"\x00\xff", b"\x00\xff", "AP8="),
        ("enum", "enum('new','paid')", "paid", "paid", "paid"),
        ("set", "set('a','b','c')", "a,c", {"c", "a"}, "a,c"),
        ("json", "json", '{"a": [1, "x"]}', {b"a": [1, b"x"]}, {"a": [1, "x"]}),
    ],
)
def test_snapshot_and_binlog_values_type_alike(
    data_type: str, column_type: str, snapshot_value: Any, binlog_value: Any, expected: Any
) -> None:
    convert = column_converter(data_type, column_type)
    assert convert(snapshot_value) == expected
    assert convert(binlog_value) == expected
    orjson.dumps(expected)


def test_row_converter_gives_what_convert_row_gives() -> None:
    """The snapshot's compiled row conversion against ``convert_row``: every column type of
    the table above (its snapshot values), NULLs, one column, and a bad value (an error)."""
    from producers.mysql_cdc_values import row_converter

    cases = test_snapshot_and_binlog_values_type_alike.pytestmark[0].args[1]
    columns = [f"c{i}_{c[0]}" for i, c in enumerate(cases)]
    conv = {name: column_converter(c[0], c[1]) for name, c in zip(columns, cases, strict=True)}
    values = tuple(c[2] for c in cases)
    convert = row_converter(columns, conv)
    for row in (
        values,
        (None,) * len(values),
        tuple(v if i % 2 else None for i, v in enumerate(values)),
    ):
        assert convert(row) == convert_row(dict(zip(columns, row, strict=True)), conv)
        assert orjson.dumps(convert(row)) == orjson.dumps(
            convert_row(dict(zip(columns, row, strict=True)), conv)
        )
    assert row_converter(["x"], {"x": column_converter("int")})((7,)) == {"x": 7}
    bad = tuple("abc" if c[0] == "decimal" else v for c, v in zip(cases, values, strict=True))
    with pytest.raises(ValueError, match="column 'c0_decimal'"):
        convert_row(dict(zip(columns, bad, strict=True)), conv)
    with pytest.raises(Exception):  # noqa: B017 - any: the caller asks convert_row why
        convert(bad)


def test_negative_fractional_times_from_the_binlog_are_corrected() -> None:
    """mysql-replication 1.0.x decodes a negative TIME with a fraction wrong (its integer part
    and fraction negated apart): what it gives, and what the column holds."""
    from producers.mysql_cdc_values import fix_binlog_times, time_columns

    conv = {"t": column_converter("time"), "n": column_converter("int")}
    cases = [
        (-timedelta(microseconds=999_000), "-00:00:00.001000"),  # -00:00:00.001
        (-timedelta(seconds=1, microseconds=750_000), "-00:00:01.250000"),  # -00:00:01.25
        (-timedelta(seconds=1), "-00:00:01"),  # no fraction: right as given
        (timedelta(seconds=1, microseconds=250_000), "00:00:01.250000"),  # positive: right
    ]
    for given, stored in cases:
        image = {"t": given, "n": -5}
        fix_binlog_times(image, time_columns(conv))
        assert convert_row(image, conv) == {"t": stored, "n": -5}


def test_decimals_are_never_written_with_an_exponent() -> None:
    convert = column_converter("decimal", "decimal(65,30)")
    assert convert(Decimal("-1.000000000000000000E-12")) == "-0.000000000001000000000000000000"
    assert convert(Decimal("12.30")) == "12.30"


def test_nulls_zero_dates_and_bad_values() -> None:
    conv = {"d": column_converter("datetime"), "n": column_converter("decimal")}
    assert convert_row({"d": None, "n": None}, conv) == {"d": None, "n": None}
    assert convert_row({"d": "0000-00-00 00:00:00", "n": "1"}, conv)["d"] is None
    with pytest.raises(ValueError, match="column 'n'"):
        convert_row({"d": None, "n": "abc"}, conv)
    with pytest.raises(ValueError, match="column 'x' is not in the table's schema"):
        convert_row({"x": 1}, conv)


def test_segments_of_a_resumed_snapshot() -> None:
    p = TableProgress()
    p.begin_segment(("b.1", 100))
    p.last_key = (10,)
    p.begin_segment(("b.1", 500))  # crash after key 10, resumed later
    p.last_key, p.done = (20,), True
    assert p.position_of_key((5,)) == ("b.1", 100)
    assert p.position_of_key((10,)) == ("b.1", 100)
    assert p.position_of_key((11,)) == ("b.1", 500)
    assert TableProgress.from_state(orjson.loads(orjson.dumps(p.to_state()))) == p
    seam = Seam({"db.t": p})
    assert seam.start(("b.1", 4)) == ("b.1", 100)
    assert not seam.reflected("db.t", (5,), ("b.1", 200))  # after key 5 was read: streamed
    assert seam.reflected("db.t", (15,), ("b.1", 200))  # key 15 was read at 500: skipped
    assert not seam.reflected("db.t", (15,), ("b.1", 600))
    assert not seam.reflected("db.t", (15,), ("b.2", 4))


# -- a fake server: the snapshot's rows and a binlog --------------------------------------

COLUMNS = ["id", "amount"]
CONVERTERS = {"id": column_converter("int"), "amount": column_converter("decimal")}


class FakeReader:
    def __init__(self, events: list[Any], start: tuple[str, int]) -> None:
        self.log_file = start[0]
        self.events = [e for e in events if e.packet.log_pos > start[1]]

    def __iter__(self) -> Any:
        return iter(self.events)

    def close(self) -> None:
        pass


def ev(kind: str, pos: int, **kw: Any) -> Any:
    ns = SimpleNamespace(packet=SimpleNamespace(log_pos=pos), timestamp=1_700_000_000, **kw)
    return type(kind, (SimpleNamespace,), {})(**vars(ns))


def rows_ev(kind: str, pos: int, rows: list[dict[str, Any]]) -> Any:
    return ev(kind, pos, schema="db", table="t", rows=rows)


def make_source(binlog: list[Any], flat: bool) -> CDCSource:
    src = CDCSource(
        "cdc",
        {"database": "db"},
        tables=["t"],
        flat=flat,
        stream_fn=lambda pos: FakeReader(binlog, pos),
    )
    src.tables = {"db.t": Table("db", "t", COLUMNS, CONVERTERS, ["id"])}
    return src


def decoded(batches: list[Any]) -> list[tuple[bytes, Any]]:
    out = []
    for b in batches:
        enc = b.rows().encoded
        if enc is None:
            continue
        for k, d in zip(enc.keys, enc.datas, strict=True):
            out.append((k, None if d is None else orjson.loads(d)))
    return out


def test_stream_after_resumed_snapshot_has_no_gap_and_no_duplicate() -> None:
    """Keys 1-2 read as of pos 100, key 3 as of pos 300 (a resumed snapshot). The binlog:
    at 200 an update of 1 (after its read: streamed) and of 3 (before its read: skipped);
    at 400 a delete of 3 (streamed); each transaction ends with an XID."""
    binlog = [
        ev("MariadbGtidEvent", 150, gtid="0-1-5"),
        rows_ev(
            "UpdateRowsEvent",
            180,
            [
                {
                    "before_values": {"id": 1, "amount": Decimal("1")},
                    "after_values": {"id": 1, "amount": Decimal("1.5")},
                }
            ],
        ),
        rows_ev(
            "UpdateRowsEvent",
            190,
            [
                {
                    "before_values": {"id": 3, "amount": Decimal("3")},
                    "after_values": {"id": 3, "amount": Decimal("3.5")},
                }
            ],
        ),
        ev("XidEvent", 200),
        ev("MariadbGtidEvent", 350, gtid="0-1-6"),
        rows_ev("DeleteRowsEvent", 380, [{"values": {"id": 3, "amount": Decimal("3.5")}}]),
        ev("XidEvent", 400),
    ]
    for flat in (True, False):
        src = make_source(binlog, flat)
        p = TableProgress([(None, ("b.1", 100)), ((2,), ("b.1", 300))], (3,), True)
        src.progress = {"db.t": p}
        src.seam = Seam(src.progress)
        src.phase, src.position = "stream", src.seam.start(("b.1", 4))
        batches = list(src.batches())
        got = decoded(batches)
        if flat:
            assert got == [(b"1", {"id": 1, "amount": "1.5"}), (b"3", None)]
        else:
            assert [(k, v["op"], v["after"]) for k, v in got] == [
                (b"1", "u", {"id": 1, "amount": "1.5"}),
                (b"3", "d", None),
            ]
            assert got[0][1]["source"]["gtid"] == "0-1-5"
        assert batches[-1].state["binlog"] == ["b.1", 400]
        assert batches[-1].state["gtid"] == "0-1-6"


def test_open_transaction_is_not_checkpointed() -> None:
    binlog = [
        rows_ev("WriteRowsEvent", 180, [{"values": {"id": 9, "amount": Decimal("9")}}]),
        ev("XidEvent", 200),
        rows_ev("WriteRowsEvent", 250, [{"values": {"id": 10, "amount": Decimal("1")}}]),
    ]
    src = make_source(binlog, True)
    src.phase, src.position = "stream", ("b.1", 4)
    batches = list(src.batches())
    assert decoded(batches) == [(b"9", {"id": 9, "amount": "9"})]  # 10: not committed yet
    assert batches[-1].state["binlog"] == ["b.1", 200]


def _tables_now(monkeypatch: pytest.MonkeyPatch, table: Table) -> list[str]:
    """The server's catalog (``load_table``) answers ``table``; the names asked are kept."""
    asked: list[str] = []

    def load(conn: Any, source: str, database: str, name: str) -> Table:
        asked.append(f"{database}.{name}")
        return table

    monkeypatch.setattr("producers.mysql_cdc_source.load_table", load)
    return asked


def _ddl_source(binlog: list[Any]) -> CDCSource:
    conn = SimpleNamespace(close=lambda: None)
    src = make_source(binlog, True)
    src._connect = lambda settings: conn
    src.phase, src.position = "stream", ("b.1", 4)
    return src


def test_an_added_renamed_and_dropped_column_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows after an ALTER TABLE are typed with the table's new columns, and the checkpoint
    moves past the statement (a restart reads on with the new columns)."""
    note = {**CONVERTERS, "note": column_converter("varchar")}
    asked = _tables_now(monkeypatch, Table("db", "t", [*COLUMNS, "note"], note, ["id"]))
    binlog = [
        rows_ev("WriteRowsEvent", 180, [{"values": {"id": 1, "amount": Decimal("1")}}]),
        ev("XidEvent", 200),
        ev("QueryEvent", 300, schema=b"db", query=b"ALTER TABLE `t` ADD COLUMN note TEXT"),
        rows_ev(
            "WriteRowsEvent", 380, [{"values": {"id": 2, "amount": Decimal("2"), "note": "hi"}}]
        ),
        ev("XidEvent", 400),
    ]
    src = _ddl_source(binlog)
    batches = list(src.batches())
    assert asked == ["db.t"]
    assert decoded(batches) == [
        (b"1", {"id": 1, "amount": "1"}),
        (b"2", {"id": 2, "amount": "2", "note": "hi"}),
    ]
    assert [b.state["binlog"] for b in batches] == [["b.1", 300], ["b.1", 400]]
    # a statement on another table, or in another database, is not followed
    for query, schema in (
        (b"ALTER TABLE t2 ADD COLUMN x INT", b"db"),
        (b"ALTER TABLE t ADD y INT", b"other"),
    ):
        asked.clear()
        list(_ddl_source([ev("QueryEvent", 300, schema=schema, query=query)]).batches())
        assert asked == []


@pytest.mark.parametrize(
    ("query", "why"),
    [
        (b"DROP TABLE `t`", "dropped or truncated"),
        (b"TRUNCATE TABLE t", "dropped or truncated"),
        (b"RENAME TABLE t TO t_old", "renamed"),
        (b"ALTER TABLE t RENAME TO t_old", "renamed"),
        (b"ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, amount)", "primary key changed"),
    ],
)
def test_a_ddl_that_cannot_be_followed_stops_naming_it(
    monkeypatch: pytest.MonkeyPatch, query: bytes, why: str
) -> None:
    _tables_now(monkeypatch, Table("db", "t", COLUMNS, CONVERTERS, ["id", "amount"]))
    src = _ddl_source([ev("QueryEvent", 300, schema=b"db", query=query)])
    with pytest.raises(SchemaChanged, match=rf"DDL on captured table db\.t.*{why}.*--reset"):
        list(src.batches())


def _column(type_: int, name: str, **kw: Any) -> Any:
    return SimpleNamespace(type=type_, name=name, **kw)


def _behind_binlog(columns: list[Any] | None) -> list[Any]:
    """Behind by two changes (a column added, then dropped again): the catalog is already
    past the rows between them."""
    row = rows_ev(
        "WriteRowsEvent", 380, [{"values": {"id": 2, "amount": Decimal("2"), "note": "hi"}}]
    )
    if columns is not None:
        row.columns = columns
    return [
        ev("QueryEvent", 300, schema=b"db", query=b"ALTER TABLE t ADD COLUMN note TEXT"),
        row,
        ev("XidEvent", 400),
    ]


def test_a_row_older_than_the_tables_columns_is_typed_from_its_table_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rows between two changes are typed from their own binlog table map (names,
    types and character sets with binlog_row_metadata=FULL), never with the current columns."""
    from pymysqlreplication.constants import FIELD_TYPE

    _tables_now(monkeypatch, Table("db", "t", COLUMNS, CONVERTERS, ["id"]))
    columns = [
        _column(FIELD_TYPE.LONG, "id"),
        _column(FIELD_TYPE.NEWDECIMAL, "amount"),
        _column(FIELD_TYPE.BLOB, "note", character_set_name="utf8mb4"),
    ]
    batches = list(_ddl_source(_behind_binlog(columns)).batches())
    assert decoded(batches) == [(b"2", {"id": 2, "amount": "2", "note": "hi"})]


def test_a_row_unlike_the_tables_columns_without_full_metadata_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without names and character sets in the table map (binlog_row_metadata not FULL) such a
    row stops the source naming the fix, instead of being typed with the wrong columns."""
    from pymysqlreplication.constants import FIELD_TYPE

    _tables_now(monkeypatch, Table("db", "t", COLUMNS, CONVERTERS, ["id"]))
    no_charset = [
        _column(FIELD_TYPE.LONG, "id"),
        _column(FIELD_TYPE.NEWDECIMAL, "amount"),
        _column(FIELD_TYPE.BLOB, "note", character_set_name=None),
    ]
    for columns in (None, no_charset):
        with pytest.raises(
            SchemaChanged, match=r"after 'ALTER TABLE t ADD COLUMN note TEXT'.*FULL.*--reset"
        ):
            list(_ddl_source(_behind_binlog(columns)).batches())


def test_binlog_and_catalog_converters_agree_on_every_family() -> None:
    """A column typed from the binlog's table map reads like the same column typed from
    information_schema (MariaDB's JSON, a LONGTEXT, excepted: the catalog's parse wins)."""
    from pymysqlreplication.constants import FIELD_TYPE as F

    from producers.mysql_cdc_values import binlog_converter, binlog_converters

    cases = [
        (("decimal", "decimal(12,2)"), _column(F.NEWDECIMAL, "c"), Decimal("12.30")),
        (("int", "int(10) unsigned"), _column(F.LONG, "c"), 4294967295),
        (("year", "year(4)"), _column(F.YEAR, "c"), 2024),
        (("bit", "bit(8)"), _column(F.BIT, "c"), "00000101"),
        (("double", "double"), _column(F.DOUBLE, "c"), 1.5),
        (("datetime", "datetime(6)"), _column(F.DATETIME2, "c"), datetime(2024, 1, 2, 3, 4, 5, 6)),
        (("timestamp", "timestamp"), _column(F.TIMESTAMP2, "c"), datetime(2024, 1, 2, 3, 4, 5)),
        (("date", "date"), _column(F.DATE, "c"), date(2024, 2, 29)),
        (("time", "time"), _column(F.TIME2, "c"), timedelta(hours=-1, minutes=-2)),
        (
            ("varchar", "varchar(20)"),
            _column(F.VARCHAR, "c", character_set_name="utf8mb4"),
            "héllo",
        ),
        (("text", "text"), _column(F.BLOB, "c", character_set_name="utf8mb4"), b"t"),
        (("blob", "blob"), _column(F.BLOB, "c", character_set_name="binary"), b"\x00\xff"),
        (
            ("varbinary", "varbinary(4)"),
            _column(F.VARCHAR, "c", character_set_name="binary"),
            b"\x01",
        ),
        (("enum", "enum('new','paid')"), _column(F.ENUM, "c"), "paid"),
        (("set", "set('a','b','c')"), _column(F.SET, "c", set_values=["a", "b", "c"]), {"c", "a"}),
        (("json", "json"), _column(F.JSON, "c"), {b"a": [1, b"x"]}),
    ]
    for (data_type, column_type), column, value in cases:
        ours = column_converter(data_type, column_type)
        assert binlog_converter(column)(value) == ours(value), (data_type, value)
    mariadb_json = _column(F.BLOB, "doc", character_set_name="utf8mb4")
    found = binlog_converters([mariadb_json], {"doc": column_converter("json")})
    assert found is not None and found["doc"]('{"a": 1}') == {"a": 1}


def test_bad_row_goes_to_poison() -> None:
    binlog = [
        rows_ev(
            "WriteRowsEvent",
            180,
            [
                {"values": {"id": 1, "amount": "nan?"}},
                {"values": {"id": 2, "amount": Decimal("2")}},
            ],
        ),
        ev("XidEvent", 200),
    ]
    src = make_source(binlog, True)
    src.phase, src.position = "stream", ("b.1", 4)
    (batch,) = list(src.batches())
    assert decoded([batch]) == [(b"2", {"id": 2, "amount": "2"})]
    assert len(batch.poison) == 1 and "column 'amount'" in batch.poison[0].message


def test_empty_set_from_the_binlog_is_empty_text_not_null() -> None:
    """mysql-replication reads an empty SET as None and says so only in the row's none
    sources ("empty set"); SELECT (the snapshot) gives ''. A NULL SET stays None. Found by
    tests/integration/test_mysql_cdc_e2e.py (MongoDB held null where the table held '')."""
    tags = column_converter("set", "set('x','y')")
    binlog = [
        rows_ev(
            "WriteRowsEvent",
            180,
            [
                {"values": {"id": 1, "tags": None}, "none_sources": {"tags": "empty set"}},
                {"values": {"id": 2, "tags": None}, "none_sources": {"tags": "null"}},
            ],
        ),
        rows_ev(
            "UpdateRowsEvent",
            190,
            [
                {
                    "before_values": {"id": 3, "tags": {"x"}},
                    "before_none_sources": {},
                    "after_values": {"id": 3, "tags": None},
                    "after_none_sources": {"tags": "empty set"},
                }
            ],
        ),
        ev("XidEvent", 200),
    ]
    for flat in (True, False):
        src = make_source(binlog, flat)
        src.tables = {
            "db.t": Table("db", "t", ["id", "tags"], {"id": CONVERTERS["id"], "tags": tags}, ["id"])
        }
        src.phase, src.position = "stream", ("b.1", 4)
        got = decoded(list(src.batches()))
        if flat:
            assert got == [
                (b"1", {"id": 1, "tags": ""}),
                (b"2", {"id": 2, "tags": None}),
                (b"3", {"id": 3, "tags": ""}),
            ]
        else:
            assert got[2][1]["before"] == {"id": 3, "tags": "x"}
            assert got[2][1]["after"] == {"id": 3, "tags": ""}


def test_change_records_carry_binlog_position_and_gtid_headers() -> None:
    """Each record's Kafka headers: the end position of its row event and its transaction's
    GTID (none when the transaction has none); a primary-key update's two records both; a
    poison row leaves the headers aligned with the records."""
    binlog = [
        ev("MariadbGtidEvent", 150, gtid="0-1-5"),
        rows_ev(
            "WriteRowsEvent",
            180,
            [{"values": {"id": 1, "amount": "nan?"}}, {"values": {"id": 2, "amount": 2}}],
        ),
        rows_ev(
            "UpdateRowsEvent",
            190,
            [
                {
                    "before_values": {"id": 2, "amount": 2},
                    "after_values": {"id": 3, "amount": 2},
                }
            ],
        ),
        ev("XidEvent", 200),
        rows_ev("DeleteRowsEvent", 280, [{"values": {"id": 3, "amount": 2}}]),
        ev("XidEvent", 300),
    ]
    for flat in (True, False):
        src = make_source(binlog, flat)
        src.phase, src.position = "stream", ("b.1", 4)
        batches = list(src.batches())
        enc = [b.rows().encoded for b in batches]
        keys = [k for e in enc if e is not None for k in (e.keys or [])]
        headers = [h for e in enc if e is not None for h in (e.headers or [])]
        assert keys == [b"2", b"2", b"3", b"3"]
        at180 = [("headrace.binlog.position", b"b.1:180"), ("headrace.binlog.gtid", b"0-1-5")]
        at190 = [("headrace.binlog.position", b"b.1:190"), ("headrace.binlog.gtid", b"0-1-5")]
        assert headers == [at180, at190, at190, [("headrace.binlog.position", b"b.1:280")]]
        assert sum(len(b.poison) for b in batches) == 1


class LiveReader(FakeReader):
    """A blocking reader: iterating again resumes where the last pass stopped."""

    def __init__(self, events: list[Any], start: tuple[str, int]) -> None:
        super().__init__(events, start)
        self.rest = iter(self.events)
        self.closed = False

    def __iter__(self) -> Any:
        return self.rest

    def close(self) -> None:
        self.closed = True


def _write(pos: int, key: int) -> list[Any]:
    row = {"values": {"id": key, "amount": Decimal(key)}}
    return [rows_ev("WriteRowsEvent", pos, [row]), ev("XidEvent", pos + 10)]


def _live_source(binlog: list[Any], **kw: Any) -> tuple[CDCSource, list[LiveReader]]:
    made: list[LiveReader] = []

    def stream(pos: tuple[str, int]) -> LiveReader:
        made.append(LiveReader(binlog, pos))
        return made[-1]

    kw.setdefault("linger", 0.0)
    src = CDCSource("cdc", {"database": "db"}, tables=["t"], stream_fn=stream, **kw)
    src.tables = {"db.t": Table("db", "t", COLUMNS, CONVERTERS, ["id"])}
    src.phase, src.position = "stream", ("b.1", 4)
    return src, made


def test_a_heartbeat_ends_the_pass_and_the_next_pass_reads_on_without_reconnecting() -> None:
    """A heartbeat between transactions: caught up, the pass ends, the reader stays open for
    the next pass; a heartbeat inside a transaction does not end it; ``close`` closes the
    reader."""
    binlog = [
        *_write(100, 1),
        ev("HeartbeatLogEvent", 120),
        rows_ev("WriteRowsEvent", 200, [{"values": {"id": 2, "amount": Decimal(2)}}]),
        ev("HeartbeatLogEvent", 205),  # mid-transaction: read on
        ev("XidEvent", 210),
        ev("HeartbeatLogEvent", 220),
        *_write(300, 3),
    ]
    src, made = _live_source(binlog, flat=True)
    first = list(src.batches())
    assert [k for k, _ in decoded(first)] == [b"1"]
    assert first[-1].state["binlog"] == ["b.1", 110]
    assert len(made) == 1 and not made[0].closed
    second = list(src.batches())
    assert [k for k, _ in decoded(second)] == [b"2"]
    assert second[-1].state["binlog"] == ["b.1", 210]
    assert len(made) == 1 and not made[0].closed  # the same reader, read on
    third = list(src.batches())  # the reader ends (the end of a non-blocking binlog): closed
    assert [k for k, _ in decoded(third)] == [b"3"]
    assert made[0].closed
    src.batches().close()
    list(src.batches())  # a new reader from the last commit: nothing after it
    assert len(made) == 2 and made[1].closed


def test_close_ends_the_reader_held_between_passes() -> None:
    src, made = _live_source([*_write(100, 1), ev("HeartbeatLogEvent", 120)], flat=True)
    list(src.batches())
    assert not made[0].closed
    src.close()
    assert made[0].closed


def test_a_pass_left_at_a_batch_closes_the_reader_and_the_next_reconnects() -> None:
    """The runner stops iterating after a batch: the reader is closed, and the next pass
    reads again from the last commit handed on (nothing lost, nothing doubled)."""
    binlog = [*_write(100, 1), *_write(200, 2), ev("HeartbeatLogEvent", 220)]
    src, made = _live_source(binlog, flat=True, linger=0.0)
    gen = src.batches()
    first = next(gen)
    gen.close()
    assert [k for k, _ in decoded([first])] == [b"1"] and made[0].closed
    rest = list(src.batches())
    assert [k for k, _ in decoded(rest)] == [b"2"] and len(made) == 2


def test_a_batch_is_handed_on_after_linger_or_batch_size_at_a_commit() -> None:
    binlog = [*_write(100, 1), *_write(200, 2), *_write(300, 3), ev("HeartbeatLogEvent", 320)]
    src, _ = _live_source(binlog, flat=True, linger=0.0)  # every commit: its own batch
    assert [len(b.rows().values) for b in src.batches()] == [1, 1, 1]
    src, _ = _live_source(binlog, flat=True, linger=60.0, batch_size=2)
    assert [len(b.rows().values) for b in src.batches()] == [2, 1]
    src, _ = _live_source(binlog, flat=True, linger=60.0)  # all at the heartbeat
    assert [len(b.rows().values) for b in src.batches()] == [3]


class PausingReader(LiveReader):
    """A live reader whose binlog may hold pauses: ``("pause", seconds)``."""

    def __init__(self, events: list[Any], start: tuple[str, int]) -> None:
        super().__init__([e for e in events if not isinstance(e, tuple)], start)
        self.rest = self._play(events)

    @staticmethod
    def _play(events: list[Any]) -> Any:
        for e in events:
            if isinstance(e, tuple):
                time.sleep(e[1])
            else:
                yield e


def test_heartbeats_waiting_from_before_the_pass_do_not_end_it() -> None:
    """Heartbeats the server sent while no pass read come first in the next pass: one ends a
    pass only once the pass is ``linger`` old (the server then had nothing for ``linger``)."""
    binlog = [
        ev("HeartbeatLogEvent", 50),  # sent during the runner's pause: passed over
        ev("HeartbeatLogEvent", 60),
        *_write(100, 1),
        ev("HeartbeatLogEvent", 120),  # the pass is younger than linger: read on
        ("pause", 0.25),
        ev("HeartbeatLogEvent", 130),  # caught up
        *_write(200, 2),
        ev("HeartbeatLogEvent", 220),
    ]
    made: list[PausingReader] = []

    def stream(pos: tuple[str, int]) -> PausingReader:
        made.append(PausingReader(binlog, pos))
        return made[-1]

    src = CDCSource("cdc", {"database": "db"}, tables=["t"], stream_fn=stream, linger=0.2)
    src.tables = {"db.t": Table("db", "t", COLUMNS, CONVERTERS, ["id"])}
    src.phase, src.position = "stream", ("b.1", 4)
    assert [k for k, _ in decoded(list(src.batches()))] == [b"1"]
    assert len(made) == 1 and not made[0].closed
    assert [k for k, _ in decoded(list(src.batches()))] == [b"2"]  # the same reader
    assert len(made) == 1


def test_snapshot_reads_are_what_change_makes_of_each_row_in_order() -> None:
    """``_reads`` (the snapshot's chunk path: compiled conversion, records made in bulk)
    against ``_change`` row by row: the same keys, values, times, headers and positions, in
    the rows' order, and a row that cannot be converted as a dead letter between them."""
    from producers.mysql_cdc_source import _Out

    rows = [(1, Decimal("1.50")), (2, None), (3, "abc"), (4, Decimal("-0.01"))]
    where = {"snapshot": "db.t"}
    headers = [("headrace.binlog.position", b"b.1:4")]
    for flat in (True, False):
        src = make_source([], flat)
        table = src.tables["db.t"]
        bulk, single = _Out(), _Out()
        src._reads(bulk, table, rows, 1_700_000_000_000, where, headers)
        for r in rows:
            row = dict(zip(COLUMNS, r, strict=True))
            src._change(single, table, "r", None, row, 1_700_000_000_000, where, headers)
        assert bulk.keys == single.keys == [b"1", b"2", b"4"]
        assert bulk.datas == single.datas
        assert (bulk.times, bulk.where, bulk.headers) == (
            single.times,
            single.where,
            single.headers,
        )
        assert bulk.nbytes == single.nbytes
        assert [p.message for p in bulk.poison] == [p.message for p in single.poison]
        assert len(bulk.poison) == 1 and "column 'amount'" in bulk.poison[0].message


@pytest.mark.parametrize(
    "text",
    [
        *(f"2024-01-02 03:04:05{f}" for f in ("", ".5", ".12", ".123", ".1234", ".12345")),
        "2024-01-02 03:04:05.000006",
        "2024-02-29 23:59:59.999999",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999999",
        "1970-01-01 00:00:01.000000",
        "0000-00-00 00:00:00",  # zero date: None
        "2024-00-10 00:00:00",  # zero in date: None
        "2024-02-30 00:00:00",  # not a day: None
        "2024-01-02 24:00:00",
        "2024-01-02 03:04:05.1234567",  # 7 digits: None from mysqlclient
        "2024-01-02 03:04:05+01:00",
        "2024-01-02 03:04:05.5+01:00",
        "2024-W01-1 03:04:05",
        "2024-01-02T03:04:05",
        "2024-01-02",
        "\uff12\uff10\uff12\uff14-01-02 03:04:05",  # not ASCII digits
        "2024-01-02 03:04",
    ],
)
def test_the_snapshots_datetime_parser_equals_mysqlclients(text: str) -> None:
    """``connect_bulk``'s DATETIME/TIMESTAMP converter against mysqlclient's own: the same
    value (or None) for the server's canonical texts and for anything else."""
    times = pytest.importorskip("MySQLdb.times")
    from producers.mysql_cdc_catalog import datetime_or_none

    def of(convert: Any) -> Any:
        try:
            value = convert(text)
        except Exception as exc:  # the same failure, if any
            return type(exc)
        return (type(value), value, getattr(value, "tzinfo", None))

    assert of(datetime_or_none) == of(times.DateTime_or_None)
