"""The DynamoDB sink connector (``type: dynamodb``): its config, how to build it, its probe.

``connectors.dynamodb_writer`` writes the batches (BatchWriteItem chunks, conditional puts
with ``version_field``); this module declares the keys, builds the writer on
``headrace.clients.aws_client`` and probes the table. Needs boto3 (``headrace[dynamodb]``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from connectors.dynamodb_writer import DynamoWriter
from headrace.config.aws import AwsAccess
from headrace.config.base import ConfigModel, ProblemKey, problems
from headrace.config.durations import PositiveDuration
from headrace.config.sinks import SinkBase
from headrace.plugins import Probe, SinkPlugin

__all__ = ["PLUGIN", "DynamoDBSink", "SinkRateLimit", "dynamo_client"]


class SinkRateLimit(ConfigModel):
    """Write rate cap: ``rate`` items per ``per``."""

    rate: float = Field(gt=0, description="Items written per 'per' period at most.")
    per: PositiveDuration = Field(default=1.0, description="The period of 'rate'.")

    @property
    def per_second(self) -> float:
        """The rate in items per second."""
        return self.rate / self.per


class DynamoDBSink(SinkBase, AwsAccess):
    """Writes records to a DynamoDB table, idempotently."""

    type: Literal["dynamodb"] = Field(description="Sink type: dynamodb.")
    table: str = Field(min_length=3, max_length=255, description="Table name.")
    partition_key: str = Field(min_length=1, description="Record field used as partition key.")
    sort_key: str | None = Field(default=None, description="Record field used as sort key.")
    version_field: str | None = Field(
        default=None, description="Field compared so an older version never overwrites a newer."
    )
    create: bool = Field(
        default=False, description="Create the table (on-demand billing) if it does not exist."
    )
    rate_limit: SinkRateLimit | None = Field(
        default=None,
        description="Keep writes under the table's capacity; it holds per sink process, so "
        "N copies of the sink write up to N times it.",
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Write requests in flight at once (BatchWriteItem chunks, or conditional "
        "PutItems with version_field).",
    )

    @model_validator(mode="after")
    def _check(self) -> DynamoDBSink:
        found: list[tuple[ProblemKey, str]] = []
        if self.sort_key is not None and self.sort_key == self.partition_key:
            found.append(("sort_key", "must differ from partition_key"))
        if found:
            raise problems(found)
        return self

    def id_fields(self) -> tuple[str, ...]:
        return (self.partition_key, *([self.sort_key] if self.sort_key else []))

    @property
    def id_key(self) -> str:
        return "partition_key"


def dynamo_client(config: DynamoDBSink, timeout: float = 10.0) -> Any:
    """A DynamoDB client taking Python values (``resource.meta.client``), one attempt per
    call (the sink retries, so it sees every throttle), a pool with room for every request
    in flight (reads too), or connections get thrown away."""
    from headrace.clients import aws_client

    pool = max(32, 2 * config.concurrency)
    return aws_client("dynamodb", config, timeout=timeout, pool=pool, resource=True)


def build(name: str, config: DynamoDBSink, context: Any) -> Any:
    """The ``DynamoWriter`` of sink ``name`` (throttles counted by ``context.on_throttle``)."""
    return DynamoWriter(
        name,
        config,
        dynamo_client(config),
        on_throttle=context.on_throttle,
        key_fields=context.key_fields,
    )


def probes(name: str, config: DynamoDBSink) -> list[Probe]:
    """The table exists (or ``create: true`` will create it)."""

    def run(timeout: float) -> tuple[bool, str]:
        from headrace.clients import aws_client

        client = aws_client("dynamodb", config, timeout=timeout)
        try:
            desc = client.describe_table(TableName=config.table)["Table"]
        except client.exceptions.ResourceNotFoundException:
            if config.create:
                return (True, "table missing; create: true creates it")
            return (False, "table not found; create it or set create: true")
        return (True, f"table {desc.get('TableStatus', '?').lower()}")

    return [("dynamodb table", config.table, run)]


PLUGIN = SinkPlugin(
    type="dynamodb",
    config=DynamoDBSink,
    build=build,
    probes=probes,
    requires=("boto3",),
    extra="dynamodb",
)
