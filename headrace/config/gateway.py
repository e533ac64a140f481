"""The ``gateway:`` section of the pipeline file: the HTTP gateway (``headrace gateway``).

``GatewayConfig`` says where the gateway listens, how large a request may be, how tokens are
checked (``auth``, ``headrace.config.gateway_security.GatewayAuth``), the per-client limit
(``limits``), and which topics are writable (``topics``: nothing else is). ``GatewayTopic``
says how a record becomes a Kafka message on one topic: its key field(s), its event-time
field, its format (JSON or Confluent-framed Avro) and schema, whether a request is
all-or-nothing (``atomic``: one Kafka transaction), and the topic's own rate limit.

Combinations refused (exit 2, naming the key):

- ``format: avro`` without ``schema``, or with an inline mapping (Avro schemas are ``.avsc``
  files in ``schemas.dir``, named like a source's ``schema``);
- an inline JSON Schema that is not a valid JSON Schema;
- listening on an address other than loopback without ``auth`` (anyone reaching the port
  could write to the topics);
- a ``gateway:`` without topics, or a topic name ending in ``.dlq`` (dead-letter topics are
  written by the gateway itself).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, model_validator

from headrace.config.base import ConfigModel, FieldList, ProblemKey, Topic, problems
from headrace.config.durations import ByteSize, PositiveDuration
from headrace.config.gateway_security import GatewayAuth, RateLimit

__all__ = [
    "BreakerConfig",
    "GatewayConfig",
    "GatewayTopic",
    "IdempotencyConfig",
]

TopicFormat = Literal["json", "avro"]


class GatewayTopic(ConfigModel):
    """One writable topic: how a posted record becomes a Kafka message."""

    key: FieldList | None = Field(
        default=None,
        description="Record field(s) whose values form the Kafka message key (none: the "
        "request's explicit key, else a null key).",
    )
    time: str | None = Field(
        default=None,
        description="Record field holding the event time (ISO-8601 or epoch milliseconds), "
        "the message timestamp; default: the time the request arrived.",
    )
    format: TopicFormat = Field(
        default="json",
        description="How values are written. json: the record as JSON; avro: Confluent-framed "
        "Avro with the id of 'schema' in the pipeline's registry.",
    )
    schema_: str | dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="What records are checked against. json: a JSON Schema, inline or a file "
        "path (relative to the pipeline file); avro: the name of <schemas.dir>/<name>.avsc.",
    )
    atomic: bool = Field(
        default=False,
        description="All or nothing: one rejected record rejects the request (422), and the "
        "accepted ones are written in one Kafka transaction.",
    )
    limit: RateLimit | None = Field(
        default=None,
        description="The topic's rate limit (records, every client together).",
    )

    @model_validator(mode="after")
    def _check(self) -> GatewayTopic:
        found: list[tuple[ProblemKey, str]] = []
        if self.format == "avro":
            if self.schema_ is None:
                found.append(
                    ("schema", "format avro needs a schema: the name of an .avsc in schemas.dir")
                )
            elif not isinstance(self.schema_, str):
                found.append(
                    (
                        "schema",
                        "with format avro, name an .avsc file in schemas.dir (e.g. schema: "
                        "order); inline schemas are JSON Schemas, for format json",
                    )
                )
        elif isinstance(self.schema_, dict):
            from jsonschema import SchemaError, validators

            try:
                validators.validator_for(self.schema_).check_schema(self.schema_)
            except SchemaError as exc:
                found.append(("schema", f"not a valid JSON Schema: {exc.message}"))
        if found:
            raise problems(found)
        return self


class IdempotencyConfig(ConfigModel):
    """The store of answers to requests with an ``Idempotency-Key`` header."""

    ttl: PositiveDuration = Field(
        default=3600.0,
        description="How long an answer is kept and returned again for a retried request.",
    )
    max_entries: int = Field(
        default=100_000,
        ge=1,
        description="Answers kept at most (per process); past it the oldest is forgotten.",
    )
    max_bytes: ByteSize = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Bytes of answers kept at most (per process; a batch's answer holds a "
        "line per record); past it the oldest is forgotten.",
        json_schema_extra={"default_text": "64MiB"},
    )


class BreakerConfig(ConfigModel):
    """The circuit breaker in front of the Kafka producer."""

    failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive produce failures (timeouts, delivery errors) that open it; "
        "'all brokers down' and a full producer queue open it at once.",
    )
    open_for: PositiveDuration = Field(
        default=2.0,
        description="How long it stays open (503 with Retry-After at once) before one probe "
        "(a metadata request) may close it.",
    )


class GatewayConfig(ConfigModel):
    """The HTTP gateway: POST /topics/<topic>/records publishes to the declared topics."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(
        default=8088, ge=0, le=65535, description="Port to listen on (0: a free one)."
    )
    max_body: ByteSize = Field(
        default=4 * 1024 * 1024,
        description="Largest request body accepted; larger ones get 413.",
        json_schema_extra={"default_text": "4MiB"},
    )
    processes: int = Field(
        default=1,
        ge=1,
        description="How many gateway processes share the limits: each enforces "
        "rate/processes and burst/processes of every limit. Above 1 they may also listen on "
        "one port together (SO_REUSEPORT).",
    )
    produce_timeout: PositiveDuration = Field(
        default=15.0,
        description="Longest wait for the broker's acknowledgement of a request's records "
        "(also the producer's message.timeout.ms); past it the request gets 503, and its "
        "records may still arrive.",
    )
    auth: GatewayAuth | None = Field(
        default=None,
        description="Bearer-token (JWT) checks; without it anyone who reaches the port may "
        "publish (allowed only on a loopback address).",
    )
    limits: RateLimit | None = Field(
        default=None, description="Rate limit of each client (token 'sub', else address)."
    )
    idempotency: IdempotencyConfig = Field(
        default_factory=IdempotencyConfig, description="Idempotency-Key answers."
    )
    breaker: BreakerConfig = Field(
        default_factory=BreakerConfig, description="Circuit breaker in front of Kafka."
    )
    topics: dict[Topic, GatewayTopic] = Field(
        description="Writable topics by name; a POST to any other topic gets 404."
    )

    @model_validator(mode="after")
    def _check(self) -> GatewayConfig:
        found: list[tuple[ProblemKey, str]] = []
        if not self.topics:
            found.append(("topics", "name at least one writable topic"))
        for name in self.topics:
            if name.endswith(".dlq"):
                found.append(
                    (
                        ("topics", name),
                        "dead-letter topics are written by the gateway itself; publish to "
                        f"{name.removesuffix('.dlq')!r} instead",
                    )
                )
        if self.auth is None and not _is_loopback(self.host):
            found.append(
                (
                    "auth",
                    f"required when host is {self.host!r} (not a loopback address): anyone "
                    "reaching the port could publish; configure auth or listen on 127.0.0.1",
                )
            )
        if found:
            raise problems(found)
        return self

    def atomic_topics(self) -> list[str]:
        """The topics whose requests are all-or-nothing (Kafka transactions)."""
        return [name for name, topic in self.topics.items() if topic.atomic]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
