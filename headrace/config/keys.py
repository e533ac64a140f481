"""What each topic of a pipeline is keyed by, as record fields, and what follows from it.

A topic's *key fields* are the record fields whose values, in order, make its Kafka key
(``schemas.encode_key``): a source's ``key``; a records stage's ``key``, or its input's key
fields when the transform leaves those fields alone; an aggregate's ``group_by`` then
``window_start``; a rank's ``partition_by`` then its member's key fields (those of its input
not already in ``partition_by``). ``None`` means not known as fields: a topic produced outside
the file, a source or stage with a null key, two writers that key differently, a transform
that rewrites a key field or runs a ``python`` hook, a rank over such a topic.

Two rules rest on it (ARCHITECTURE.md, "Guarantees"):

- an aggregate whose input is not keyed by a subset of its ``group_by`` (so one group's
  records may sit in several partitions) first repartitions its input by ``group_by`` through
  an internal topic (``needs_repartition``);
- a sink that applies tombstones and names its id fields maps a tombstone's key onto them by
  name, so its id fields must be exactly the topic's key fields (``sink_key_problems``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from headrace.config.base import ProblemKey
from headrace.config.sinks import SinkBase
from headrace.config.sources import SourceBase
from headrace.config.stages import Stage

__all__ = [
    "MEMBER",
    "KeyFields",
    "key_fields",
    "needs_repartition",
    "pipeline_notes",
    "sink_key_problems",
    "stage_key_fields",
]

KeyFields = tuple[str, ...] | None


class Pipeline(Protocol):
    """What this module reads of a ``headrace.config.Pipeline`` (which calls it while it
    validates, so it is not imported here)."""

    @property
    def name(self) -> str: ...
    @property
    def sources(self) -> Mapping[str, SourceBase]: ...
    @property
    def stages(self) -> Mapping[str, Stage]: ...
    @property
    def sinks(self) -> Mapping[str, SinkBase]: ...


MEMBER = "<member>"
"""Stands for a rank member known only as its input's key bytes (its input's key fields are
not known): the rank's key then holds that key's text in this position."""


def _transform_keeps(stage: Stage, fields: tuple[str, ...]) -> bool:
    """Whether a records stage's steps leave every one of ``fields`` as it was."""
    for step in stage.transform or []:
        if step.python is not None:
            return False
        written: set[str] = set()
        if step.set:
            written |= set(step.set)
        if step.cast:
            written |= set(step.cast)
        if step.drop:
            written |= set(step.drop)
        if step.rename:
            written |= set(step.rename) | set(step.rename.values())
        if written & set(fields):
            return False
    return True


def stage_key_fields(stage: Stage, input_fields: KeyFields) -> KeyFields:
    """The key fields of ``stage``'s output, given those of its input."""
    if stage.aggregate is not None:
        return (*stage.aggregate.group_by, "window_start")
    if stage.rank is not None:
        part = tuple(stage.rank.partition_by)
        member = input_fields if input_fields is not None else (MEMBER,)
        return (*part, *(f for f in member if f not in part))
    if stage.key is not None:
        return tuple(stage.key)
    if input_fields is None or not _transform_keeps(stage, input_fields):
        return None
    if stage.lookup is not None and set(stage.lookup.fields) & set(input_fields):
        return None  # the lookup overwrites a key field
    return input_fields


def key_fields(pipeline: Pipeline) -> dict[str, KeyFields]:
    """Topic -> its key fields, for every topic a source or stage writes (module doc)."""
    writers: dict[str, list[KeyFields]] = {}
    for source in pipeline.sources.values():
        writers.setdefault(source.topic, []).append(
            tuple(source.key) if source.key is not None else None
        )
    known: dict[str, KeyFields] = {t: _agree(ks) for t, ks in writers.items()}
    # stages in dependency order: a stage's input is settled once all its writers are
    pending = dict(pipeline.stages)
    while pending:
        ready = [
            n
            for n, s in pending.items()
            if not any(o.to == s.from_ for m, o in pending.items() if m != n)
        ]
        if not ready:  # a cycle (refused by validation): what is left is unknown
            for stage in pending.values():
                known[stage.to] = None
            break
        for name in ready:
            stage = pending.pop(name)
            out = stage_key_fields(stage, known.get(stage.from_))
            writers.setdefault(stage.to, []).append(out)
            known[stage.to] = _agree(writers[stage.to])
    return known


def _agree(candidates: list[KeyFields]) -> KeyFields:
    first = candidates[0]
    return first if all(c == first for c in candidates) else None


def needs_repartition(stage: Stage, input_fields: KeyFields) -> bool:
    """Whether an aggregate must re-key its input by ``group_by`` first: its input's key is
    not known to be a function of the group (key fields a subset of ``group_by``)."""
    if stage.aggregate is None:
        return False
    if not input_fields or MEMBER in input_fields:
        return True
    return not set(input_fields) <= set(stage.aggregate.group_by)


def sink_key_problems(pipeline: Pipeline) -> Iterator[tuple[ProblemKey, str]]:
    """Sinks that apply tombstones whose id fields cannot be read from the key."""
    keys = key_fields(pipeline)
    for name, sink in pipeline.sinks.items():
        ids = sink.id_fields()
        if not ids or not sink.applies_tombstones() or sink.from_ not in keys:
            continue
        fields = keys[sink.from_]
        if fields is None or set(ids) == set(fields):
            continue
        where: ProblemKey = ("sinks", name, sink.id_key)
        by_key = ", or leave the id to the Kafka key" if sink.id_key == "id" else ""
        if MEMBER in fields:
            yield (
                where,
                (
                    f"{sink.from_!r} is a ranking whose members are known only by their input's "
                    "key bytes (that input's key fields are unknown), so a tombstone cannot name "
                    f"{', '.join(ids)}; give the stage feeding the rank a key:{by_key}"
                ),
            )
            continue
        yield (
            where,
            (
                f"{sink.from_!r} is keyed by [{', '.join(fields)}], so its tombstones name those "
                f"fields; the sink's id [{', '.join(ids)}] would not match the document a "
                f"tombstone deletes: name exactly [{', '.join(fields)}]{by_key}"
            ),
        )


def pipeline_notes(pipeline: Pipeline) -> list[str]:
    """What ``headrace check`` tells besides problems: repartitions the worker adds, sinks
    that skip the tombstones of a topic that has them, and insert-only sinks on running
    values."""
    keys = key_fields(pipeline)
    notes: list[str] = []
    for name, stage in pipeline.stages.items():
        if stage.aggregate is not None and needs_repartition(stage, keys.get(stage.from_)):
            fields = keys.get(stage.from_)
            keyed = f"keyed by [{', '.join(fields)}]" if fields else "not keyed by known fields"
            notes.append(
                f"stage {name!r}: input {stage.from_!r} is {keyed}, not by a subset of "
                f"group_by [{', '.join(stage.aggregate.group_by)}]: the worker repartitions "
                f"it by group_by through the internal topic "
                f"'headrace-{pipeline.name}-{name}-by-group' first"
            )
    ranked = {s.to for s in pipeline.stages.values() if s.rank is not None}
    for name, sink in pipeline.sinks.items():
        if sink.from_ in ranked and not sink.applies_tombstones():
            mode = getattr(sink, "write", None)
            notes.append(
                f"warning: sink {name!r}{f' (write: {mode})' if mode else ''} skips the "
                f"tombstones of ranking {sink.from_!r}, so members that left the top N stay "
                "where it writes; use a mode that deletes on tombstones (MongoDB: write: "
                "delete-on-tombstone) to hold exactly the current top N"
            )
    updating = {
        s.to
        for s in pipeline.stages.values()
        if s.aggregate is not None and s.aggregate.emit == "updates"
    }
    for name, sink in pipeline.sinks.items():
        if sink.from_ in updating and sink.keeps_first_write():
            notes.append(
                f"warning: sink {name!r} keeps the first value of each key, but "
                f"{sink.from_!r} sends running values (emit: updates), so it keeps a window's "
                "first partial result, not its final one; use an upserting write mode"
            )
    return notes
