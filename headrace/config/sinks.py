"""``SinkBase``: the keys every sink has, whatever its type.

Every sink reads one topic (``from``) and writes in batches bounded by ``batch_size`` records,
``batch_bytes`` and ``linger`` (the longest a record waits for its batch to fill). Each sink
type declares its own model (a subclass with ``type: Literal[...]``) in its connector module,
registered in ``headrace.plugins``; the pipeline's ``sinks:`` accepts every registered type.
A sink says which record fields name what it writes (``id_fields``) and whether it deletes on
a tombstone (``applies_tombstones``): ``headrace.config.keys`` checks those against the
topic's key.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from headrace.config.base import ConfigModel, Topic, problem
from headrace.config.durations import ByteSize, Duration

__all__ = ["SinkBase"]


class SinkBase(ConfigModel):
    """Keys every sink has: the topic it reads and how it batches."""

    type: str = Field(description="Sink type (each type's module narrows it to its name).")
    from_: Topic = Field(alias="from", description="Topic the sink reads.")
    batch_size: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="Most records written per batch."
    )
    batch_bytes: ByteSize = Field(
        default=4_000_000,
        description="Most bytes (keys and values) written per batch (e.g. 4MB); a larger "
        "record is written alone.",
    )
    linger: Duration = Field(
        default=0.1, description="Longest a record waits for its batch to fill (e.g. 100ms)."
    )

    @model_validator(mode="after")
    def _check_batch(self) -> SinkBase:
        if self.batch_bytes < 1:
            raise problem("must be at least 1 byte", "batch_bytes")
        return self

    def id_fields(self) -> tuple[str, ...]:
        """The record fields naming the document/item written (empty: the Kafka key)."""
        return ()

    def applies_tombstones(self) -> bool:
        """Whether a tombstone deletes what its key names."""
        return True

    def keeps_first_write(self) -> bool:
        """Whether a later value for a key is ignored (an insert-only mode)."""
        return False

    @property
    def id_key(self) -> str:
        """The config key that names ``id_fields`` (for error messages)."""
        return "id"
