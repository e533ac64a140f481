"""Where a pipeline's results can count a record twice after a crash, as ``check`` says it.

A source without ``exactly_once`` is at-least-once: killed between producing records and
storing the checkpoint that covers them, it produces them again on restart, at new offsets.
Sinks absorb that (idempotent writes), records stages pass the copies on, and an aggregate
downstream cannot tell a re-sent record from a new one: it counts it again (the chaos suite's
long run found exactly this, docs/chaos.md). Its guard against replays covers offsets a stage
reads again, not records a source produced twice. With ``exactly_once: true`` the records and
the checkpoint go in one Kafka transaction, and the stages read committed transactions only,
so a killed source's last batch is aborted and never read.

``delivery_notes`` names each such source with the aggregate it feeds (through any chain of
records stages), and the key that fixes it. A warning, not a refusal: at-least-once is a
legal choice where an occasional double count after a crash is acceptable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headrace.config.model import Pipeline

__all__ = ["at_least_once_inputs", "delivery_notes"]


def at_least_once_inputs(pipeline: Pipeline, topic: str) -> list[str]:
    """The sources without ``exactly_once`` whose records reach ``topic``, directly or
    through records stages (transforms and lookups pass a re-sent record on as new), sorted.
    A stateful stage's output (aggregate, rank) ends the walk: it drops what it saw."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [topic]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, source in pipeline.sources.items():
            if source.topic == current and not source.exactly_once:
                found.add(name)
        for stage in pipeline.stages.values():
            if stage.to == current and stage.aggregate is None and stage.rank is None:
                todo.append(stage.from_)
    return sorted(found)


def delivery_notes(pipeline: Pipeline) -> list[str]:
    """One warning per aggregate stage fed by at-least-once sources (see the module doc)."""
    notes = []
    for name, stage in pipeline.stages.items():
        if stage.aggregate is None:
            continue
        for source in at_least_once_inputs(pipeline, stage.from_):
            notes.append(
                f"warning: source {source!r} is at-least-once (exactly_once: false): if it "
                f"crashes it produces again the records after its last checkpoint, and "
                f"aggregate stage {name!r} counts them twice; set "
                f"sources.{source}.exactly_once: true (records and checkpoint in one Kafka "
                "transaction) for exact results"
            )
    return notes
