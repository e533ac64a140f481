"""The pipeline file model: ``Pipeline`` and its top-level sections.

``Pipeline`` is the typed form of the pipeline file (see ARCHITECTURE.md). Build it with
``headrace.config.load_pipeline`` (interpolation, decryption, file-aware errors); validating
plain data with ``Pipeline.model_validate`` works too but raises pydantic's ``ValidationError``.

Cross-reference rules checked here:

- source, stage and sink names are unique across the three sections;
- every stage ``from``, lookup ``table_from`` and sink ``from`` is a topic that a source or stage
  produces, or one listed under ``topics:`` (external topics), or the ``.dlq``/``.overflow``
  companion of such a topic;
- stages do not form a cycle (a stage reading, directly or not, what it writes);
- a sink that applies tombstones and names its id fields names exactly the key fields of the
  topic it reads (``headrace.config.keys``), so a tombstone deletes what the upserts wrote.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from headrace.config.base import ConfigModel, Name, ProblemKey, Topic, problem, problems
from headrace.config.durations import Duration
from headrace.config.gateway import GatewayConfig
from headrace.config.keys import sink_key_problems
from headrace.config.redact import known_secrets, redact_text, redact_tree
from headrace.config.stages import Stage
from headrace.config.watchdog import WatchdogConfig
from schemas import Registry

if TYPE_CHECKING:  # at run time, ensure_connectors() gives these the registered types
    from typing import TypeAlias

    from headrace.config.sinks import SinkBase
    from headrace.config.sources import SourceBase

    SourceConfig: TypeAlias = SourceBase
    SinkConfig: TypeAlias = SinkBase

__all__ = [
    "KafkaConfig",
    "MetricsConfig",
    "Pipeline",
    "SchemasConfig",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"]
ClientValue = str | int | float | bool

_SERVER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_FIRST_CLASS = {
    "bootstrap.servers": "bootstrap_servers",
    "metadata.broker.list": "bootstrap_servers",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
}
_DERIVED_SUFFIXES = (".dlq", ".overflow")
#: librdkafka settings headrace's guarantees rest on: ``kafka.client`` may not change them
#: (name: (the only value accepted, why))
CLIENT_FIXED: dict[str, tuple[ClientValue, str]] = {
    "acks": ("all", "a record counts as sent only once every in-sync replica has it"),
    "request.required.acks": (
        "all",
        "a record counts as sent only once every in-sync replica has it",
    ),
    "enable.idempotence": (True, "a producer retry must not write a record twice"),
    "partitioner": ("murmur2_random", "keys must land on the partitions Faust and Java pick"),
    "enable.auto.commit": (False, "offsets are committed only after the work is done"),
    "enable.auto.offset.store": (False, "offsets are committed only after the work is done"),
    "isolation.level": ("read_committed", "aborted transactions must not be read"),
}
_FIXED_ALIASES: dict[str, tuple[ClientValue, ...]] = {"all": ("all", -1, "-1")}


class KafkaConfig(ConfigModel):
    """How every headrace process connects to Kafka."""

    bootstrap_servers: str = Field(
        description="Comma-separated host:port list (a YAML list is accepted too)."
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI or OAUTHBEARER (SASL only).",
    )
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    client: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra librdkafka settings passed through as they are "
        "(e.g. ssl.ca.location, linger.ms); they override headrace's defaults, except the "
        "settings its guarantees rest on (acks, enable.idempotence, partitioner, "
        "enable.auto.commit, enable.auto.offset.store, isolation.level), which are fixed.",
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join_list(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> KafkaConfig:
        found: list[tuple[ProblemKey, str]] = []
        servers = [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]
        if not servers:
            found.append(("bootstrap_servers", "must name at least one host:port"))
        for server in servers:
            match = _SERVER_RE.match(server)
            if match is None or not 1 <= int(match.group(2)) <= 65535:
                found.append(
                    (
                        "bootstrap_servers",
                        f"{redact_text(server)!r} is not host:port with a port from 1 to 65535",
                    )
                )
        sasl = self.security_protocol.startswith("SASL_")
        sasl_keys = [
            k for k in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, k)
        ]
        if not sasl and sasl_keys:
            found.append(
                (sasl_keys[0], "only used with security_protocol SASL_PLAINTEXT or SASL_SSL")
            )
        if sasl and self.sasl_mechanism is None:
            found.append(("sasl_mechanism", f"required with {self.security_protocol}"))
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            for key in ("sasl_username", "sasl_password"):
                if getattr(self, key) is None:
                    found.append((key, f"required with sasl_mechanism {self.sasl_mechanism}"))
        for name, value in self.client.items():
            if name in _FIRST_CLASS:
                found.append((("client", name), f"set kafka.{_FIRST_CLASS[name]} instead"))
            elif not isinstance(value, ClientValue):
                found.append((("client", name), "expected a string, number or boolean"))
            elif name in CLIENT_FIXED:
                fixed, why = CLIENT_FIXED[name]
                if value not in _FIXED_ALIASES.get(str(fixed), (fixed,)):
                    found.append(
                        (
                            ("client", name),
                            f"fixed to {fixed!r} by headrace ({why}); remove it",
                        )
                    )
        if found:
            raise problems(found)
        return self

    def librdkafka_config(self) -> dict[str, ClientValue]:
        """Settings for confluent-kafka clients: connection keys plus ``client`` passthrough."""
        conf: dict[str, ClientValue] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.client)
        return conf


class SchemasConfig(ConfigModel):
    """Where record schemas come from."""

    dir: str = Field(
        default="schemas",
        description="Directory of .avsc files, relative to the pipeline file's directory.",
    )
    registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible schema registry URL (default: a local registry file).",
    )

    @model_validator(mode="after")
    def _check(self) -> SchemasConfig:
        if self.registry_url is not None and not re.match(r"^https?://", self.registry_url):
            raise problem(
                f"{redact_text(self.registry_url)!r} is not an http:// or https:// URL",
                "registry_url",
            )
        return self


class MetricsConfig(ConfigModel):
    """Prometheus metrics endpoint of every headrace process."""

    port: int = Field(default=9108, ge=1, le=65535, description="HTTP port serving /metrics.")
    final_scrape: Duration = Field(
        default=15.0,
        description=(
            "At exit, wait at most this long for Prometheus to scrape the process's final "
            "counts (only when Prometheus scrapes it or its targets folder says one does); "
            "0 turns the wait off."
        ),
    )


class Pipeline(ConfigModel):
    """A whole pipeline file. See the module docstring for the cross-reference rules."""

    name: Name = Field(description="Pipeline name; prefixes consumer groups and checkpoints.")
    kafka: KafkaConfig = Field(description="Kafka connection.")
    schemas: SchemasConfig = Field(
        default_factory=SchemasConfig, description="Schema directory and registry."
    )
    topics: list[Topic] = Field(
        default_factory=list,
        description="External topics (produced outside this file) that stages or sinks read.",
    )
    sources: dict[Name, SourceConfig] = Field(
        default_factory=dict,
        description="Sources by name; the type key picks the kind (mysql, s3, or a plugin's).",
    )
    stages: dict[Name, Stage] = Field(default_factory=dict, description="Stream stages by name.")
    sinks: dict[Name, SinkConfig] = Field(
        default_factory=dict,
        description="Sinks by name; the type key picks the kind (mongodb, dynamodb, or a "
        "plugin's).",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics endpoint.")
    watchdog: WatchdogConfig = Field(
        default_factory=WatchdogConfig,
        description="When a process without progress while work is pending is unhealthy, "
        "and when it exits for its supervisor to restart it.",
    )
    gateway: GatewayConfig | None = Field(
        default=None,
        description="The HTTP gateway (`headrace gateway`): publishes records to the topics it "
        "declares, over HTTP (docs/gateway.md).",
    )
    tests: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pipeline test cases run by `headrace test` (the format of a *_test.yaml "
        "file's tests:, see docs/testing-pipelines.md); every other command ignores them.",
    )

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Pipeline:
        """Validate ``obj`` (the source and sink types known to ``headrace.plugins``)."""
        ensure_connectors()
        return super().model_validate(obj, *args, **kwargs)

    _file: Path | None = PrivateAttr(default=None)
    _secrets: frozenset[str] = PrivateAttr(default=frozenset())
    _overrides: dict[tuple[str | int, ...], Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Pipeline:
        found: list[tuple[ProblemKey, str]] = []
        if not (self.sources or self.stages or self.sinks or self.gateway):
            found.append((None, "the pipeline has no sources, stages or sinks"))
        found.extend(self._duplicate_names())
        found.extend(self._dangling_topics())
        found.extend(self._cycles())
        if not found:  # key fields follow the wiring: only once it is sound
            found.extend(sink_key_problems(self))
        if found:
            raise problems(found)
        return self

    def _duplicate_names(self) -> Iterator[tuple[ProblemKey, str]]:
        owner: dict[str, str] = {}
        for section in ("sources", "stages", "sinks"):
            for name in getattr(self, section):
                if name in owner:
                    yield (section, name), f"name already used under {owner[name]}"
                else:
                    owner[name] = section

    def _dangling_topics(self) -> Iterator[tuple[ProblemKey, str]]:
        known = set(self.produced_topics()) | set(self.topics)
        consumers: list[tuple[tuple[str | int, ...], str]] = []
        for name, stage in self.stages.items():
            consumers.append((("stages", name, "from"), stage.from_))
            if stage.lookup is not None:
                consumers.append(
                    (("stages", name, "lookup", "table_from"), stage.lookup.table_from)
                )
        for name, sink in self.sinks.items():
            consumers.append((("sinks", name, "from"), sink.from_))
        for key, topic in consumers:
            if topic in known or any(
                topic.endswith(s) and topic.removesuffix(s) in known for s in _DERIVED_SUFFIXES
            ):
                continue
            close = difflib.get_close_matches(topic, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = (
                f"topic {topic!r} is not produced by any source or stage{hint}; "
                "list topics produced elsewhere under topics:"
            )
            yield key, message

    def _cycles(self) -> Iterator[tuple[ProblemKey, str]]:
        readers: dict[str, list[str]] = {}
        for name, stage in self.stages.items():
            readers.setdefault(stage.from_, []).append(name)
        reported: set[frozenset[str]] = set()
        for start in self.stages:
            path = [start]
            stack = [(start, iter(readers.get(self.stages[start].to, [])))]
            while stack:
                _, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    continue
                if child == start:
                    cycle = frozenset(path)
                    if cycle not in reported:
                        reported.add(cycle)
                        loop = " -> ".join([*path, start])
                        yield ("stages", start), f"stages form a cycle: {loop}"
                    continue
                if child in path:
                    continue
                path.append(child)
                stack.append((child, iter(readers.get(self.stages[child].to, []))))

    def produced_topics(self) -> dict[str, list[str]]:
        """Topic -> names of the sources and stages that write it (``gateway`` for the
        gateway's topics)."""
        out: dict[str, list[str]] = {}
        for name, source in self.sources.items():
            out.setdefault(source.topic, []).append(name)
        for name, stage in self.stages.items():
            out.setdefault(stage.to, []).append(name)
        for topic in self.gateway.topics if self.gateway is not None else ():
            out.setdefault(topic, []).append("gateway")
        return out

    @property
    def file(self) -> Path | None:
        """The file this pipeline was loaded from (None if built from data)."""
        return self._file

    @property
    def schema_dir(self) -> Path:
        """``schemas.dir`` resolved against the pipeline file's directory."""
        base = self._file.parent if self._file is not None else Path.cwd()
        return base / self.schemas.dir

    def schema_registry(self) -> Registry:
        """Where schema ids come from: ``schemas.registry_url`` (a Confluent-compatible
        registry) or the local registry file in ``schemas.dir``. The one place it is built
        (sources encode with it, stages and sinks decode with it)."""
        from schemas import ConfluentRegistry, LocalRegistry

        if self.schemas.registry_url:
            return ConfluentRegistry(self.schemas.registry_url)
        return LocalRegistry(self.schema_dir)

    def attach_source(
        self,
        file: Path | None,
        secrets: frozenset[str],
        overrides: dict[tuple[str | int, ...], Any],
    ) -> None:
        """Record where this pipeline came from and which values are secret (used by the loader)."""
        self._file = file
        self._secrets = secrets
        self._overrides = dict(overrides)

    def redacted(self) -> dict[str, Any]:
        """The resolved config as plain data (file keys, defaults filled in), secrets as ``***``.

        Redacted (see ``headrace.config.redact``): values from ``enc:`` tokens; the parts of a
        value substituted from environment variables; values of secret-looking keys
        (password, secret, token, api_key, sasl_password, aws_secret_access_key, ...); URL
        passwords (``mysql+pymysql://app:***@host/db``, ``mongodb://u:***@host``); and any
        occurrence of those secret values inside other strings. Durations are float seconds.
        """
        data = _type_first(self.model_dump(mode="python", by_alias=True, exclude_none=True))
        secrets = self._secrets | known_secrets()
        result = redact_tree(data, secrets=secrets, overrides=self._overrides)
        assert isinstance(result, dict)
        return result


def _type_first(node: Any) -> Any:
    """Put each mapping's ``type`` key first, as people write it."""
    if isinstance(node, dict):
        items = sorted(node.items(), key=lambda item: item[0] != "type")
        return {k: _type_first(v) for k, v in items}
    if isinstance(node, list):
        return [_type_first(v) for v in node]
    return node


def ensure_connectors() -> None:
    """Complete ``Pipeline`` with the source and sink types of ``headrace.plugins`` (once):
    ``sources:`` and ``sinks:`` accept exactly the registered types. Done on first use, not
    at import, so importing the config imports no connector module."""
    if Pipeline.__pydantic_complete__:
        return
    from headrace.plugins import sink_plugins, source_plugins

    Pipeline.model_rebuild(
        _types_namespace={
            "SourceConfig": _union([p.config for p in source_plugins().values()]),
            "SinkConfig": _union([p.config for p in sink_plugins().values()]),
        }
    )


def _union(models: list[type[Any]]) -> Any:
    if len(models) == 1:
        return models[0]
    union: Any = models[0]
    for model in models[1:]:
        union = union | model
    return Annotated[union, Field(discriminator="type")]
