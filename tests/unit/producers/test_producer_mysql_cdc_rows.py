"""``producers.mysql_cdc_rows`` without a server: what it decodes, and that it leaves an
event it does not take untouched for ``mysql-replication`` (the integration test
``test_mysql_cdc_rows.py`` compares both on a real binlog, type by type)."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from producers import mysql_cdc_rows
from producers.mysql_cdc_rows import fast_rows


class Packet:
    """The part of ``BinLogPacketWrapper`` the decoder uses: read, unread, read_bytes."""

    def __init__(self, data: bytes, header: int = 10) -> None:
        self.data, self.pos, self.read_bytes = data, 0, header

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        self.read_bytes += n
        return out

    def unread(self, data: bytes) -> None:
        self.pos -= len(data)
        self.read_bytes -= len(data)


def column(name: str | None, type_: int, **kw: Any) -> Any:
    return SimpleNamespace(name=name, type=type_, **kw)


INT, VARCHAR, TIME2 = 3, 15, 19
COLUMNS = [
    column("id", INT, unsigned=False),
    column("s", VARCHAR, max_length=80, character_set_name="utf8mb4"),
]


def event(
    body: bytes, columns: list[Any] = COLUMNS, kind: int = 30, bitmap: bytes = b"\x03"
) -> Any:
    packet = Packet(body)
    return SimpleNamespace(
        event_type=kind,
        number_of_columns=len(columns),
        columns_present_bitmap=bitmap,
        columns_present_bitmap2=bitmap,
        columns=columns,
        packet=packet,
        event_size=packet.read_bytes + len(body),
    )


def row(key: int, text: bytes | None) -> bytes:
    nulls = b"\x02" if text is None else b"\x00"
    return nulls + struct.pack("<i", key) + (b"" if text is None else bytes([len(text)]) + text)


def test_rows_of_a_write_an_update_and_a_delete() -> None:
    body = row(7, "hé".encode()) + row(-1, None)
    assert fast_rows(event(body)) == [
        {"values": {"id": 7, "s": "hé"}},
        {"values": {"id": -1, "s": None}},
    ]
    assert fast_rows(event(body, kind=31)) == [
        {"before_values": {"id": 7, "s": "hé"}, "after_values": {"id": -1, "s": None}}
    ]
    assert fast_rows(event(row(3, b""), kind=32)) == [{"values": {"id": 3, "s": ""}}]


@pytest.mark.parametrize(
    ("why", "ev"),
    [
        ("a TIME column", event(row(1, b"x"), [*COLUMNS[:1], column("t", TIME2, fsp=0)])),
        ("a column left out (MINIMAL image)", event(row(1, b"x"), bitmap=b"\x01")),
        (
            "no column names",
            event(
                row(1, b"x"),
                [COLUMNS[0], column(None, VARCHAR, max_length=8, character_set_name="utf8mb4")],
            ),
        ),
        ("a partial JSON update", event(row(1, b"x"), kind=39)),
        ("not UTF-8", event(row(1, b"\xff"))),
        ("cut short", event(row(1, b"abc")[:-1])),
    ],
)
def test_an_event_it_does_not_take_is_left_untouched(why: str, ev: Any) -> None:
    before = (ev.packet.pos, ev.packet.read_bytes)
    assert fast_rows(ev) is None, why
    assert (ev.packet.pos, ev.packet.read_bytes) == before, why


def test_the_environment_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mysql_cdc_rows, "ENABLED", False)
    assert fast_rows(event(row(7, b"x"))) is None


def test_not_a_library_event() -> None:
    assert fast_rows(SimpleNamespace(rows=[])) is None
