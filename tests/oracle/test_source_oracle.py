"""The source differential oracle (issue #15): generated S3 object bodies (``s3gen``) read by
the real S3 source (``S3ObjectSource`` with a one-object fake client, its reader threads,
parsers, encoder and batches, as a pipeline runs it) and by the reference reader (``s3ref``,
stdlib only). Every item must come out exactly once, records equal to the reference's in
order (position, key, value, event time), poison at the same positions (with the line's
bytes for jsonl), and a damaged object must end with the one dead letter saying where. A
jsonl source is read twice, with the native reader (when built) and without it: both must
give identical results.

``HEADRACE_ORACLE_CASES`` (default 300, a few seconds) cases from ``HEADRACE_ORACLE_SEED``
(default 0). A failing case prints its seed, parameters and body (truncated) and is kept as
``found/source-<seed>.json`` (its parameters, and its body zlib-compressed in base64:
``S3Case.from_json(json.load(open(path))).body``); ``test_found_source_cases`` replays every
kept case. One case in five is also read resumed from a checkpoint inside the object.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.native import require_native_reader
from s3gen import S3Case, generate
from s3ref import Expected, expect

from producers.encoder import RecordEncoder
from producers.projection import NATIVE_READER, Projection
from producers.s3_source import S3ObjectSource
from schemas import JsonCodec

CASES = int(os.environ.get("HEADRACE_ORACLE_CASES", "300"))
FIRST = int(os.environ.get("HEADRACE_ORACLE_SEED", "0"))
FOUND = Path(__file__).resolve().parent / "found"
SHOWN = 1500  # body bytes printed in a reproduction


class _S3:
    """A one-object S3 client (listing, GET, ranged GET)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def get_paginator(self, _name: str) -> Any:
        class Pages:
            def paginate(self, **_kw: Any) -> Any:
                yield {"Contents": [{"Key": "in/object", "ETag": '"e1"'}]}

        return Pages()

    def get_object(self, Bucket: str, Key: str, IfMatch: str, Range: str = "") -> Any:
        start = int(Range.removeprefix("bytes=").removesuffix("-") or 0)
        return {"Body": io.BytesIO(self.body[start:])}


@dataclass
class Outcome:
    """What the source made of one object: records (position, key, value bytes, time) and
    dead letters (position, error class, value, decoded offset or None, message)."""

    records: list[tuple[int, bytes | None, bytes, int | None]] = field(default_factory=list)
    letters: list[tuple[int, str, bytes | None, int | None, str]] = field(default_factory=list)


def run_source(case: S3Case, native: bool, resume: int = 0) -> Outcome:
    """Read ``case``'s body with the S3 source, as ``headrace produce`` configures it (plain
    JSON output: a jsonl source reads through a projection of its key and time fields);
    ``resume``: from a checkpoint inside the object after item ``resume``."""
    keys = [case.key] if case.key else None
    projection = None
    if case.fmt == "jsonl":
        fields = [f for f in (case.key, case.time) if f]
        projection = Projection(fields, key=keys, time=case.time, native=native)
    encoder = RecordEncoder(JsonCodec(), keys, case.time)
    src = S3ObjectSource(
        "oracle",
        _S3(case.body),
        bucket="b",
        file_format=case.fmt,
        gzipped=case.gz,
        delimiter=case.delimiter,
        concurrency=1,
        encoder=encoder,
        projection=projection,
        batch_records=997,
    )
    current = {"key": "in/object", "etag": "e1", "line": resume} if resume else None
    src.restore({"current": current} if current else None)
    out = Outcome()
    for batch in src.batches():  # the runner's part: encode what the reader did not, send
        rows = batch.rows()
        enc = rows.encoded or encoder.encode_many(rows.values, rows.raws)
        for i in range(len(rows)):
            line = rows.position(i)["line"]  # type: ignore[index]
            if i in enc.poison:
                raw = rows.raws[i] if rows.raws is not None else None
                _, value = encoder.best_effort(rows.values[i], raw)
                out.letters.append((line, "PoisonRecord", value, None, str(enc.poison[i])))
                continue
            time = enc.times[i] if enc.times is not None else None
            key = enc.keys[i] if enc.keys is not None else None
            out.records.append((line, key, enc.datas[i], time))  # type: ignore[arg-type]
        for p in batch.poison:
            where = p.position
            out.letters.append(
                (where["line"], p.error_class, p.raw, where.get("offset"), p.message)
            )
    return out


def _is_end(letter: tuple[int, str, bytes | None, int | None, str]) -> bool:
    return "the object is unreadable" in letter[4]


def compare(case: S3Case, exp: Expected, got: Outcome) -> list[str]:
    """The differences between the reference's expectation and the source's outcome."""
    bad: list[str] = []
    seen = [r[0] for r in got.records] + [x[0] for x in got.letters]
    if len(seen) != len(set(seen)):
        dup = sorted({n for n in seen if seen.count(n) > 1})[:5]
        bad.append(f"items handed on more than once, at positions {dup}")
    mine = [(n, k, v if case.fmt == "jsonl" else orjson.loads(v), t) for n, k, v, t in got.records]
    items = [x for x in got.letters if not _is_end(x)]
    ends = [x for x in got.letters if _is_end(x)]
    if _lenient(exp, ends):
        return bad + _lenient_check(exp, mine, items, ends)
    if mine != exp.records:
        bad.append(_first_difference("records", exp.records, mine))
    if sorted(x[0] for x in items) != sorted(exp.poison):
        extra = sorted({x[0] for x in items} - set(exp.poison))[:5]
        missing = sorted(set(exp.poison) - {x[0] for x in items})[:5]
        bad.append(f"poison positions differ: unexpected {extra}, missing {missing}")
    elif case.fmt == "jsonl":
        for n, _cls, raw, _off, msg in items:
            if raw != exp.poison[n]:
                want = exp.poison[n]
                bad.append(f"poison at line {n}: value {raw!r:.120} != {want!r:.120} ({msg:.120})")
                break
    if exp.end is None:
        if ends:
            bad.append(f"an unexpected end letter: {ends[0][:2]} {ends[0][4]:.300}")
    elif len(ends) != 1:
        bad.append(f"expected one end letter at {exp.end[:2]}, got {[e[:2] for e in ends]}")
    else:
        n, offset, partial = exp.end
        at, _cls, raw, off, msg = ends[0]
        if (at, off) != (n, offset):
            bad.append(
                f"end letter at (item, offset) {(at, off)}, expected {(n, offset)}: {msg:.300}"
            )
        if partial is not None and raw != partial:
            size = len(raw or b"")
            bad.append(
                f"end letter value {raw!r:.120} ({size} bytes) != {partial!r:.120} "
                f"({len(partial)} bytes)"
            )
    return bad


#: Cases where ISA-L decoded a damaged deflate stream that zlib refuses (see ``_lenient``).
LENIENT: list[int] = []


def _lenient(exp: Expected, ends: list[Any]) -> bool:
    """Whether the source's gzip decoder (ISA-L) read on through damage that zlib, the
    reference's decoder, refuses at once: ISA-L takes some invalid Huffman code sets, and
    the member's CRC check at its end is what notices (documented in producers/s3_gzip.py).
    Then the reference knows only a prefix of what the source decoded."""
    return (
        exp.end is not None
        and len(ends) == 1
        and ("CRC check failed" in ends[0][4] or "stores length" in ends[0][4])
        and ends[0][0] > exp.end[0]
    )


def _lenient_check(exp: Expected, mine: list[Any], items: list[Any], ends: list[Any]) -> list[str]:
    """What still holds when ISA-L read further than zlib: zlib's items come first, the
    same, and the source's end letter comes after them."""
    if mine[: len(exp.records)] != exp.records:
        return [_first_difference("records (ISA-L read on)", exp.records, mine)]
    if not set(exp.poison) <= {x[0] for x in items}:
        return ["poison zlib's bytes hold is missing (ISA-L read on)"]
    return []


def _first_difference(what: str, exp: list[Any], got: list[Any]) -> str:
    for i, (e, g) in enumerate(zip(exp, got, strict=False)):
        if e != g:
            return f"{what} differ at #{i}: expected {_short(e)}, got {_short(g)}"
    common = min(len(exp), len(got))
    extra = (exp[common:] or got[common:])[:1]
    return f"{what}: expected {len(exp)}, got {len(got)} (the first of the rest: {_short(extra)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + f"... ({len(text)} chars)"


def check(case: S3Case) -> list[str]:
    """Every difference of ``case``: the Python path against the reference, and the native
    reader's path (jsonl, when built) against the Python path."""
    exp = expect(case.fmt, case.body, case.gz, case.key, case.time, case.delimiter)
    python = run_source(case, native=False)
    bad = compare(case, exp, python)
    if not bad and _lenient(exp, [x for x in python.letters if _is_end(x)]):
        LENIENT.append(case.seed)
    if case.seed % 5 == 0:  # one case in five again, resumed from a checkpoint inside it
        bad += _resumed(case, exp)
    if case.fmt == "jsonl" and NATIVE_READER:
        native = run_source(case, native=True)
        if native.records != python.records:
            bad.append("native " + _first_difference("records", python.records, native.records))
        # dead letters: the same ones; their order follows the readers' chunks, not the object
        theirs, ours = sorted(python.letters), sorted(native.letters)
        if theirs != ours:
            bad.append("native " + _first_difference("letters", theirs, ours))
    return bad


def _resumed(case: S3Case, exp: Expected) -> list[str]:
    """The source resumed after an item (picked by the seed) must give the expectation's
    items after it, no more."""
    last = max([r[0] for r in exp.records] + list(exp.poison) + [exp.end[0] if exp.end else 0])
    if last < 2:
        return []
    skip = 1 + case.seed // 5 % (last - 1)
    rest = Expected(
        [r for r in exp.records if r[0] > skip],
        {n: raw for n, raw in exp.poison.items() if n > skip},
        exp.end if exp.end is not None and exp.end[0] > skip else None,
    )
    bad = compare(case, rest, run_source(case, native=False, resume=skip))
    return [f"resumed after item {skip}: {b}" for b in bad]


def reproduction(case: S3Case, bad: list[str]) -> str:
    body = case.body
    shown = repr(body[:SHOWN]) + (f" ... ({len(body)} bytes)" if len(body) > SHOWN else "")
    return (
        f"source oracle seed {case.seed}: {len(bad)} difference(s)\n"
        + "".join(f"  - {b}\n" for b in bad)
        + f"  parameters: {json.dumps(case.params(), ensure_ascii=False)}\n"
        + f"  body: {shown}\n"
        + f"  rerun: HEADRACE_ORACLE_SEED={case.seed} HEADRACE_ORACLE_CASES=1 "
        "pytest tests/oracle/test_source_oracle.py"
    )


def keep(case: S3Case) -> Path:
    """Store ``case`` under found/ (a regression case from now on)."""
    FOUND.mkdir(exist_ok=True)
    path = FOUND / f"source-{case.seed}.json"
    path.write_text(json.dumps(case.to_json(), ensure_ascii=False, indent=1) + "\n")
    return path


def test_generated_source_cases_match_the_reference_reader() -> None:
    failed = []
    for seed in range(FIRST, FIRST + CASES):
        case = generate(seed)
        bad = check(case)
        if bad:
            failed.append(case.seed)
            print(reproduction(case, bad))
            print(f"  kept as {keep(case)}")
    lenient = [seed for seed in LENIENT if FIRST <= seed < FIRST + CASES]
    print(
        f"source oracle: {CASES} generated cases from seed {FIRST}, {len(failed)} failed; "
        f"ISA-L read on through damage zlib refuses in {len(lenient)}: {lenient[:10]}"
    )
    assert not failed, f"source oracle: seeds {failed[:20]} differ (reproductions above)"


def test_found_source_cases() -> None:
    """Every case kept under found/ (a regression case once its cause is fixed)."""
    failed = []
    for path in sorted(FOUND.glob("source-*.json")) if FOUND.is_dir() else []:
        case = S3Case.from_json(json.loads(path.read_text()))
        bad = check(case)
        if bad:
            failed.append(path.name)
            print(reproduction(case, bad))
    assert not failed, f"kept source cases that still differ: {failed}"


def test_the_native_path_is_part_of_the_comparison() -> None:
    """The jsonl cases compare the native reader with the Python path when it is built: in
    CI it must be (``make setup`` builds it), so the comparison never quietly drops out."""
    require_native_reader()
