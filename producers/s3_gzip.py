"""Gzip object bodies, read so that a damaged object still gives every byte decoded before
the damage: ``GzipReader``.

``GzipReader(stream, reopen)`` is a readable binary file of the decoded bytes of every gzip
member of ``stream`` in turn (concatenated members are one body, as ``zcat`` reads them; zero
bytes after a member are padding). Its contract on damage: ``read`` returns every byte decoded
before the first unreadable compressed byte, and only the *next* ``read`` raises (and every
one after it):

- ``EOFError``: the stream ends inside a member (a truncated object);
- ``gzip.BadGzipFile``: not gzip (magic, method), a corrupt deflate stream, a CRC or length
  mismatch in a member's trailer, or bytes after a member that are neither padding nor a
  member.

``decoded`` counts the bytes returned. Where the decoder notices the damage, the decoded
bytes before it are exactly those zlib gives when fed the compressed bytes one at a time
(the stdlib's ``gzip`` loses the output of the read call that fails: up to a whole 1 MiB
read). Damage may decode to garbage for a while before it is noticed, and ISA-L takes some
invalid Huffman code sets that zlib refuses at once (1 in ~5,000 generated damaged cases):
it then decodes on, and the member's CRC check at its end is what notices.

The fast decoder is ISA-L's (``isal``, about three times zlib's speed, GIL released), else
zlib; each reads ``INPUT`` compressed bytes per call. A decoder that meets a corrupt deflate
stream drops that call's output, so the member is read again from its start: with
``reopen(offset)`` (a readable stream of the object's bytes from that compressed offset; the
S3 source makes a ranged GET) or, for a seekable stream, by seeking; this time zlib, saving
its state before each input piece and feeding the failing piece one byte at a time. This
happens once per damaged object. Without either, up to one call's output (``INPUT``
compressed bytes' worth, at most ``limit``) before the damage is lost. The CRC of a member
is checked at its end, after its bytes were returned: damage that still decodes is only
found there.
"""

from __future__ import annotations

import gzip
import importlib
import io
import logging
import struct
import zlib
from collections.abc import Callable
from typing import IO, Any

__all__ = ["GZIP_READER", "INFLATE_ERRORS", "INPUT", "GzipReader"]

log = logging.getLogger(__name__)

#: Compressed bytes per decoder call.
INPUT = 1 << 18
#: Decoded bytes a recovery may read past the fast decoder's error before it gives up
#: looking for zlib's (the two decoders agree on every corrupt stream measured).
_RECOVERY_SLACK = 1 << 20
#: Compressed bytes per zlib call while recovering (each call's state is saved first).
_RECOVERY_PIECE = 1 << 14
_MAGIC = b"\x1f\x8b"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT, _RESERVED = 2, 4, 8, 16, 0xE0


def _inflater() -> tuple[
    Callable[..., Any], Callable[[bytes, int], int], tuple[type[BaseException], ...]
]:
    """(raw deflate decoder factory, crc32, the decoder's error classes): ISA-L's when the
    ``isal`` package is installed, else zlib's."""
    try:
        isal_zlib = importlib.import_module("isal.isal_zlib")
    except ImportError:
        return zlib.decompressobj, zlib.crc32, (zlib.error,)
    return isal_zlib.decompressobj, isal_zlib.crc32, (isal_zlib.error, zlib.error)


_decompressobj, _crc32, INFLATE_ERRORS = _inflater()
#: The raw deflate decoder factory in use (its ``__module__`` says which library).
GZIP_READER = _decompressobj


class GzipReader(io.RawIOBase):
    """The decoded bytes of the gzip ``stream`` (see the module docstring for the contract
    on damage). ``reopen(offset)``: the object's bytes from compressed ``offset``, used once
    to recover the bytes before a corrupt deflate stream; ``limit``: most bytes per read."""

    def __init__(
        self,
        stream: IO[bytes],
        reopen: Callable[[int], IO[bytes]] | None = None,
        limit: int = 1 << 20,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._reopen = reopen
        self._limit = limit
        self._origin = _tell(stream)
        self._buf = b""  # compressed bytes read and not yet decoded
        self._taken = 0  # compressed bytes read from the stream
        self._d: Any = None  # the current member's decoder (None: between members)
        self._more = False  # the last call was cut at its output limit: more may be pending
        self._members = 0
        self._start = 0  # compressed offset of the current member's deflate data
        self._before = 0  # decoded bytes before the current member
        self._crc = 0
        self._produced = 0  # decoded bytes of every member so far (returned or about to be)
        self._error: BaseException | None = None
        self._pending = b""  # decoded bytes not returned yet
        self._end = False
        self.decoded = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` decoded bytes (all the rest for -1), as soon as there are some (a
        short read saves joining pieces); b"" at the end. Bytes decoded before damage come
        first; the read after them raises (see the module docstring)."""
        if size is None or size < 0:
            parts: list[bytes] = []
            try:
                while block := self.read(self._limit):
                    parts.append(block)
            except BaseException:
                if not parts:
                    raise
            return b"".join(parts)
        while not self._pending and size:
            if self._error is not None:
                raise self._error
            if self._end:
                return b""
            try:
                piece = self._step(min(size, self._limit))
            except _Damage as exc:
                self._pending, self._error = exc.recovered, exc.error
                continue
            if piece is None:
                self._end = True
            else:
                self._pending = piece
        data = self._pending
        if len(data) <= size:
            self._pending = b""
        else:
            data, self._pending = data[:size], data[size:]
        self.decoded += len(data)
        return data

    # -- members --------------------------------------------------------------------------

    def _step(self, limit: int) -> bytes | None:
        """Some decoded bytes (maybe none), or None at the end of the last member."""
        if self._d is None:
            return b"" if self._header() else None
        d = self._d
        if d.eof:  # the member's bytes were all returned: now its trailer
            self._trailer()
            return b""
        if d.unconsumed_tail:
            feed = d.unconsumed_tail
        elif self._more:
            feed = b""
        else:
            feed = self._input()
            if not feed:
                return self._truncated()
        try:
            out: bytes = d.decompress(feed, limit)
        except INFLATE_ERRORS as exc:
            what = "corrupt deflate data in the gzip member"
            raise self._recover(gzip.BadGzipFile, what, exc) from None
        self._more = len(out) == limit
        self._crc = _crc32(out, self._crc)
        self._produced += len(out)
        return out

    def _input(self) -> bytes:
        if self._buf:
            feed, self._buf = self._buf, b""
            return feed
        feed = self._stream.read(INPUT)
        self._taken += len(feed)
        return feed

    def _need(self, n: int) -> bool:
        """Whether ``n`` compressed bytes are (now) buffered; False at the stream's end."""
        while len(self._buf) < n:
            more = self._stream.read(INPUT)
            if not more:
                return False
            self._taken += len(more)
            self._buf += more
        return True

    def _header(self) -> bool:
        """Read a member's header (False: the stream ended cleanly before one)."""
        if self._members:
            while self._need(1) and self._buf[:1] == b"\x00":
                self._buf = self._buf.lstrip(b"\x00")  # padding after a member
        if not self._need(1):
            return False
        at = self._taken - len(self._buf)
        if not self._need(2) or self._buf[:2] != _MAGIC:
            raise _Damage(
                gzip.BadGzipFile(
                    f"not a gzip member at compressed byte {at}: starts with {self._buf[:2]!r} "
                    "(expected b'\\x1f\\x8b'); is the object gzip-compressed?"
                )
            )
        size = self._header_size(at)
        self._buf = self._buf[size:]
        self._start = at + size
        self._before = self._produced
        self._crc = 0
        self._more = False
        self._d = _decompressobj(wbits=-15)
        self._members += 1
        return True

    def _header_size(self, at: int) -> int:
        """The length of the header buffered at the start of ``_buf`` (reading more of it)."""
        if not self._need(10):
            raise _Damage(EOFError(f"the object ends inside a gzip header at compressed byte {at}"))
        method, flags = self._buf[2], self._buf[3]
        if method != 8:
            raise _Damage(
                gzip.BadGzipFile(f"unknown gzip compression method {method} at byte {at}")
            )
        if flags & _RESERVED:  # RFC 1952: a decoder must refuse them (zlib does)
            raise _Damage(gzip.BadGzipFile(f"reserved gzip header flags {flags:#04x} at {at}"))
        size = 10
        if flags & _FEXTRA:
            if not self._need(size + 2):
                raise _Damage(EOFError(f"the object ends inside a gzip header at byte {at}"))
            size += 2 + struct.unpack("<H", self._buf[size : size + 2])[0]
        for flag in (_FNAME, _FCOMMENT):
            if flags & flag:
                while (zero := self._buf.find(b"\x00", size)) < 0:
                    if not self._need(len(self._buf) + 1):
                        raise _Damage(EOFError(f"the object ends inside a gzip header at {at}"))
                size = zero + 1
        if flags & _FHCRC:
            size += 2
        if not self._need(size):
            raise _Damage(EOFError(f"the object ends inside a gzip header at byte {at}"))
        if flags & _FHCRC:  # checked as zlib checks it (the stdlib's gzip skips it)
            stored = struct.unpack("<H", self._buf[size - 2 : size])[0]
            if stored != zlib.crc32(self._buf[: size - 2]) & 0xFFFF:
                raise _Damage(gzip.BadGzipFile(f"gzip header CRC mismatch at byte {at}"))
        return size

    def _trailer(self) -> None:
        """Check the finished member's CRC and length; the next member's bytes stay."""
        self._buf = self._d.unused_data + self._buf
        self._d = None
        end = self._taken - len(self._buf)
        if not self._need(8):
            raise _Damage(EOFError(f"the object ends inside a gzip trailer at byte {end}"))
        crc, length = struct.unpack("<II", self._buf[:8])
        self._buf = self._buf[8:]
        if crc != self._crc:
            raise _Damage(
                gzip.BadGzipFile(
                    f"CRC check failed for the gzip member ending at compressed byte {end} "
                    f"(stored {crc:#010x}, computed {self._crc:#010x}): its bytes are damaged"
                )
            )
        if length != (self._produced - self._before) & 0xFFFFFFFF:
            raise _Damage(
                gzip.BadGzipFile(
                    f"the gzip member ending at compressed byte {end} stores length "
                    f"{length}, decoded {self._produced - self._before}: its bytes are damaged"
                )
            )

    def _truncated(self) -> bytes:
        """The stream ended inside a member: EOFError after its last decodable bytes."""
        tail: bytes = self._d.flush()
        self._produced += len(tail)
        damage = self._recover(EOFError, "the object ends inside the gzip member", None)
        damage.recovered = tail + damage.recovered
        raise damage

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self, kind: type[BaseException], what: str, exc: BaseException | None) -> _Damage:
        """The error ``kind`` (``what`` happened, from decoder error ``exc``) after the bytes
        decoded before it that the fast decoder did not give (ISA-L drops a failing call's
        output, and at a truncation may hold back the last byte): the member is read again
        from its start with zlib, fed one byte at a time around the damage. Best effort: when
        it cannot be read again, the error says so and those bytes are lost."""
        recovered = b""
        note = ""
        try:
            source = self._source(self._start)
            if source is None:
                note = "; the stream cannot be read again: the bytes decoded just before are lost"
            else:
                try:
                    recovered = _zlib_prefix(source, self._produced - self._before)
                finally:
                    if source is not self._stream:
                        source.close()
        except Exception as again:  # best effort: the damage itself is what gets reported
            note = f"; reading it again failed ({type(again).__name__}: {again})"
            log.warning("gzip member at compressed byte %d: %s", self._start, note[2:])
        at = self._produced + len(recovered)
        cause = f": {exc}" if exc is not None else ""
        error = kind(
            f"{what} whose data starts at compressed byte {self._start} (read: "
            f"{self._taken} compressed bytes), after decoded byte {at}{cause}{note}"
        )
        return _Damage(error, recovered)

    def _source(self, offset: int) -> IO[bytes] | None:
        """The object's bytes from compressed ``offset``: reopened, or this stream seeked."""
        if self._reopen is not None:
            return self._reopen(offset)
        if self._origin is not None:
            self._stream.seek(self._origin + offset)
            return self._stream
        return None


class _Damage(Exception):
    """Internal: ``error`` ends the body after ``recovered`` more decoded bytes."""

    def __init__(self, error: BaseException, recovered: bytes = b"") -> None:
        super().__init__(str(error))
        self.error = error
        self.recovered = recovered


def _zlib_prefix(source: IO[bytes], skip: int) -> bytes:
    """The raw deflate bytes zlib decodes from ``source`` before its first error, fed one
    byte at a time around it, less the first ``skip`` (already returned)."""
    d = zlib.decompressobj(wbits=-15)
    out: list[bytes] = []
    done = 0  # decoded bytes so far

    def keep(data: bytes) -> None:
        nonlocal done
        if done + len(data) > skip:
            out.append(data[max(0, skip - done) :])
        done += len(data)

    while done <= skip + _RECOVERY_SLACK and not d.eof:
        piece = source.read(_RECOVERY_PIECE)
        if not piece:
            break
        saved = d.copy()
        try:
            keep(d.decompress(piece))
        except zlib.error:
            d = saved
            for i in range(len(piece)):
                try:
                    keep(d.decompress(piece[i : i + 1]))
                except zlib.error:
                    break
            break
    return b"".join(out)


def _tell(stream: IO[bytes]) -> int | None:
    """The stream's position when it can seek back to it, else None."""
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None
