"""What a source hands the runner: batches of records and poison, each with the checkpoint
state that is safe to store once every record of the batch (and of every earlier batch) is
acknowledged by the broker.

Records travel in columns (``Rows``): a list of values, optionally the source bytes of each,
and a function giving a record's source position. Positions are only needed for dead
letters, so sources compute them on demand instead of building a dict per record (the hot
path of a source is a few microseconds per record; see ``headrace bench produce``).

Source lifecycle (called from the runner's thread): ``restore(state)`` once before the first
pass with the last stored state (None: from the beginning); ``batches()`` for one pass, which
yields until the source is caught up (the runner may stop iterating early: closing the
generator must release every resource); ``close()`` once at the end.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from schemas import Record

if TYPE_CHECKING:
    from producers.encoder import Encoded

__all__ = ["Batch", "ObjectRows", "Poison", "Rows", "Source"]


@dataclass(slots=True)
class Poison:
    """An input that cannot become a record (unparsable line, wrong CSV field count...);
    ``key`` is its Kafka key when one could be made (a dead letter keeps it)."""

    raw: bytes
    error_class: str
    message: str
    position: dict[str, Any]
    key: bytes | None = None


class Rows:
    """The records of one batch, in source order, as columns.

    ``values[i]`` is the i-th record's value; ``raws[i]`` its value's bytes as read from the
    source when they already are one JSON object (a plain JSON encoder sends them unchanged)
    or None when unknown (``raws is None``: unknown for all); ``position(i)`` is where it
    came from (None when the source has no positions). ``encoded``, when the source already
    encoded the records (in its reader threads, with the runner's encoder), holds their Kafka
    message parts aligned with ``values``, with no poison among them: the runner only
    produces them (the native reader leaves ``values`` as empty placeholders then).
    """

    __slots__ = ("_where", "encoded", "raws", "values")

    def __init__(
        self,
        values: list[dict[str, Any]],
        raws: list[bytes | None] | None = None,
        where: Callable[[int], dict[str, Any]] | None = None,
        encoded: Encoded | None = None,
    ) -> None:
        if raws is not None and len(raws) != len(values):
            raise ValueError(f"{len(raws)} raw values for {len(values)} records")
        if encoded is not None and (len(encoded.datas) != len(values) or encoded.poison):
            raise ValueError(f"{len(encoded.datas)} encoded records for {len(values)} records")
        self.values = values
        self.raws = raws
        self._where = where
        self.encoded = encoded

    @classmethod
    def of(cls, records: Sequence[Record]) -> Rows:
        """Columns of ``Record`` objects (values, their raw bytes when every one has them,
        their positions)."""
        return cls(
            [r.value for r in records],  # type: ignore[misc]  # None: a tombstone, poison here
            [r.raw for r in records],
            lambda i: records[i].position or {},
        )

    def __len__(self) -> int:
        return len(self.values)

    def position(self, i: int) -> dict[str, Any] | None:
        """The source position of record ``i`` (None when unknown)."""
        return None if self._where is None else self._where(i)


class ObjectRows:
    """Collects records of consecutive objects (S3 objects, a published stream) for one batch:
    ``add`` appends a parsed chunk's columns, ``take`` returns them as ``Rows`` whose
    positions are ``{"key", "etag", "line"}`` and starts over. Positions cost nothing until a
    dead letter asks for one. The rows are ``encoded`` when every chunk added was. ``add``
    takes the lists it is given: the caller must not use them afterwards."""

    __slots__ = (
        "_keys",
        "_nbytes",
        "_raws",
        "_starts",
        "_times",
        "_where",
        "datas",
        "lines",
        "plain",
        "poison",
        "values",
    )

    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self._raws: list[bytes | None] = []
        self.lines: list[int] = []
        self.poison: list[Poison] = []
        self._starts: list[int] = []  # index of the first record of each object segment
        self._where: list[tuple[str, str]] = []  # (key, etag) of each segment
        # encoded columns, while every chunk added came encoded (None: no key / time column)
        self.datas: list[bytes | None] = []
        self._keys: list[bytes | None] | None = None
        self._times: list[int | None] | None = None
        self._nbytes: int | None = 0  # the total length of ``datas`` (None: unknown)
        self.plain = False  # some chunk came without its encoded columns

    def __len__(self) -> int:
        return len(self.values) + len(self.poison)

    def add(
        self,
        key: str,
        etag: str,
        values: list[dict[str, Any]],
        raws: list[bytes] | list[bytes | None] | None,
        lines: list[int],
        poison: list[Poison],
        encoded: Encoded | None = None,
    ) -> None:
        """Append one chunk of object ``key``/``etag`` (``raws`` None: no source bytes;
        ``encoded``: its records' message parts, no poison among them)."""
        if not self._where or self._where[-1] != (key, etag):
            self._starts.append(len(self.values))
            self._where.append((key, etag))
        if not self.values and not self.poison:  # nothing collected: the chunk's own lists
            self._adopt(values, raws, lines, poison, encoded)
            return
        if encoded is None:
            self.plain = True
        elif not self.plain:
            if encoded.keys is not None:
                if self._keys is None:
                    self._keys = []
                self._keys.extend(encoded.keys)
            if encoded.times is not None:
                if self._times is None:
                    self._times = []
                self._times.extend(encoded.times)
            self.datas.extend(encoded.datas)
            nbytes = self._nbytes
            self._nbytes = (
                None if nbytes is None or encoded.nbytes is None else nbytes + encoded.nbytes
            )
        self.values.extend(values)
        self._raws.extend(raws if raws is not None else [None] * len(values))
        self.lines.extend(lines)
        self.poison.extend(poison)

    def _adopt(
        self,
        values: list[dict[str, Any]],
        raws: list[bytes] | list[bytes | None] | None,
        lines: list[int],
        poison: list[Poison],
        encoded: Encoded | None,
    ) -> None:
        """The first chunk of a batch: its lists become the columns, no copy (a chunk as
        large as a batch, the native reader's, is handed on as it is)."""
        self.plain = encoded is None  # nothing collected before: only this chunk counts
        if encoded is not None:
            self._keys = encoded.keys
            self._times = encoded.times
            self.datas = encoded.datas
            self._nbytes = encoded.nbytes
        self.values = values
        self._raws = cast("list[bytes | None]", raws) if raws is not None else [None] * len(values)
        self.lines = lines
        self.poison = poison

    def take(self) -> tuple[Rows, list[Poison]]:
        """The collected records and poison; the builder is empty afterwards."""
        starts, where, lines = self._starts, self._where, self.lines

        def position(i: int) -> dict[str, Any]:
            key, etag = where[bisect_right(starts, i) - 1]
            return {"key": key, "etag": etag, "line": lines[i]}

        encoded = None
        if not self.plain and len(self.values):
            from producers.encoder import Encoded

            encoded = Encoded(self._keys, self.datas, self._times, nbytes=self._nbytes)
        rows = Rows(self.values, self._raws, position, encoded)
        poison = self.poison
        self.__init__()  # type: ignore[misc]
        return rows, poison


@dataclass(slots=True)
class Batch:
    """Records in source order, the poison met among them, and the state after them.

    ``records`` is ``Rows`` (what sources make) or a list of ``Record`` (convenient for small
    sources and tests). ``state`` must resume *after the last item of this batch*. ``units``
    counts finished progress units (objects for S3, 0 for MySQL whose unit is the row).
    """

    records: Rows | list[Record]
    state: dict[str, Any]
    poison: list[Poison] = field(default_factory=list)
    units: int = 0

    def rows(self) -> Rows:
        """``records`` as ``Rows``."""
        recs = self.records
        return recs if type(recs) is Rows else Rows.of(recs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.records) + len(self.poison)


class Source(Protocol):
    """A polled source (see the module docstring for the lifecycle)."""

    name: str
    unit: str

    def restore(self, state: dict[str, Any] | None) -> None: ...

    def batches(self) -> Generator[Batch, None, None]: ...

    def close(self) -> None: ...
