"""``SourceBase``: the keys every source has, whatever its type.

A source produces records to ``topic``, keyed by ``key`` (record fields), with
``timestamp_field`` as the Kafka message timestamp (event time). Each source type declares its
own model (a subclass with ``type: Literal[...]``) in its connector module, registered in
``headrace.plugins``; the pipeline's ``sources:`` accepts every registered type.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headrace.config.base import ConfigModel, NonEmptyFieldList, Topic
from headrace.config.durations import PositiveDuration

__all__ = ["SourceBase"]


class SourceBase(ConfigModel):
    """Keys every source has: where records go and how they are keyed and timed."""

    type: str = Field(description="Source type (each type's module narrows it to its name).")

    topic: Topic = Field(description="Kafka topic the records are produced to.")
    key: NonEmptyFieldList | None = Field(
        default=None,
        description="Record fields whose values form the Kafka message key (none: null key).",
    )
    timestamp_field: str | None = Field(
        default=None,
        description="Record field used as the Kafka message timestamp (event time); "
        "default: the time the record is produced.",
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="Schema name, read from <schemas.dir>/<schema>.avsc; required for Avro "
        "output, and records are validated against it.",
    )
    poll_interval: PositiveDuration = Field(
        default=5.0, description="Pause between polls once caught up."
    )
    exactly_once: bool = Field(
        default=False,
        description="Produce records and the source checkpoint in one Kafka transaction.",
    )

    @property
    def output_format(self) -> Literal["json", "avro"]:
        """The encoding of the produced records (each type says which key sets it)."""
        raise NotImplementedError
