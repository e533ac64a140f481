"""Stage processors: one stage's work on a batch of input messages, with no Kafka I/O.

A processor takes ``InMessage`` batches (one input partition at a time, in offset order) and
returns a ``BatchOutput``: messages to produce, dead letters, how long to wait (rate limit),
and state writes for the stage's changelog-backed table. The Faust runtime (``streams.app``)
does the I/O and acks the input only after everything in the output is acknowledged.
"""

from streams.stages.aggregate import AggregateStage
from streams.stages.base import BatchOutput, InMessage, OutMessage, StageProcessor
from streams.stages.rank import RankStage
from streams.stages.records import RecordsStage

__all__ = [
    "AggregateStage",
    "BatchOutput",
    "InMessage",
    "OutMessage",
    "RankStage",
    "RecordsStage",
    "StageProcessor",
]
