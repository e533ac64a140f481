"""``headrace check --connect``: is every system a pipeline file names reachable?

One :class:`Finding` per thing named: the Kafka cluster and each topic, then what each source
and sink connector probes (``headrace.plugins``: a MySQL table and the columns its mode needs,
an S3 bucket, a MongoDB server and collection, a DynamoDB table). Nothing is created or
written. Error details pass through ``redact_text`` so a
password in a URL or a driver message never reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from headrace.config import Pipeline
from headrace.config.redact import redact_text
from headrace.errors import ConfigError
from headrace.kafka_clients import client_config
from headrace.plugins import require, sink_plugin, source_plugin

__all__ = ["Finding", "check_reachable"]

#: (reachable, what was seen or what is wrong)
Outcome = tuple[bool, str]


@dataclass(frozen=True)
class Finding:
    """The result of one check: ``owner`` is the config key (``sources.orders_db``)."""

    owner: str
    kind: str
    target: str
    ok: bool
    detail: str


def check_reachable(pipeline: Pipeline, *, timeout: float = 5.0) -> list[Finding]:
    """Run every check; a check that raises becomes a failed Finding, never an exception."""
    findings: list[Finding] = []
    try:
        findings.extend(_kafka(pipeline, timeout))
    except Exception as exc:
        findings.append(
            Finding("kafka", "kafka", pipeline.kafka.bootstrap_servers, False, _describe(exc))
        )
    for section, items, plugin_of in (
        ("sources", pipeline.sources, source_plugin),
        ("sinks", pipeline.sinks, sink_plugin),
    ):
        for name, config in items.items():
            plugin = plugin_of(config.type)
            try:
                require(plugin, f"{section[:-1]} {name!r}")
            except ConfigError as exc:
                findings.append(Finding(f"{section}.{name}", plugin.type, "-", False, str(exc)))
                continue
            for kind, target, run in plugin.probes(name, config):
                findings.extend(_guard(f"{section}.{name}", kind, target, partial(run, timeout)))
    return findings


def _guard(owner: str, kind: str, target: str, check: Callable[[], Outcome]) -> list[Finding]:
    try:
        ok, detail = check()
    except Exception as exc:
        ok, detail = False, _describe(exc)
    return [Finding(owner, kind, target, ok, detail)]


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return redact_text(text)[:300]


def _kafka(pipeline: Pipeline, timeout: float) -> Iterator[Finding]:
    from confluent_kafka.admin import AdminClient

    conf: dict[str, Any] = {**client_config(pipeline.kafka), "log_level": 0}
    kafka = pipeline.kafka
    metadata = AdminClient(conf).list_topics(timeout=timeout)
    yield Finding(
        "kafka", "kafka", kafka.bootstrap_servers, True, f"{len(metadata.brokers)} broker(s)"
    )
    produced = pipeline.produced_topics()
    named: dict[str, str] = {}
    for topic, writers in produced.items():
        named[topic] = f"written by {', '.join(writers)}"
    for topic in pipeline.topics:
        named.setdefault(topic, "external")
    for topic, role in sorted(named.items()):
        meta = metadata.topics.get(topic)
        if meta is not None and meta.error is None:
            yield Finding(
                "kafka",
                "topic",
                topic,
                True,
                f"exists, {len(meta.partitions)} partition(s); {role}",
            )
        elif role == "external":
            yield Finding(
                "kafka",
                "topic",
                topic,
                False,
                "external topic does not exist; create it or fix topics:",
            )
        else:
            yield Finding("kafka", "topic", topic, True, f"not created yet; {role} creates it")
