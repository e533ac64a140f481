"""Kafka client settings: durable producers that partition like Java/aiokafka, manual commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headrace.config import KafkaConfig, load_pipeline
from headrace.errors import ConfigError
from headrace.kafka_clients import client_config, consumer_config, producer_config

SHOP = Path(__file__).resolve().parents[1] / "config" / "fixtures" / "shop.yaml"


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> KafkaConfig:
    monkeypatch.setenv("MYSQL_PASSWORD", "pw-for-tests-123")
    return load_pipeline(SHOP).kafka


def test_producer_is_durable_and_uses_murmur2(kafka: KafkaConfig) -> None:
    conf = producer_config(kafka)
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["partitioner"] == "murmur2_random"
    overrides: dict[str, Any] = {"linger.ms": 0}
    assert producer_config(kafka, **overrides)["linger.ms"] == 0


def test_consumer_commits_manually_and_reads_committed(kafka: KafkaConfig) -> None:
    conf = consumer_config(kafka, "g1")
    assert conf["group.id"] == "g1"
    assert conf["enable.auto.commit"] is False
    assert conf["isolation.level"] == "read_committed"
    assert conf["auto.offset.reset"] == "earliest"


def test_security_settings_pass_through(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\n"
        "kafka: {bootstrap_servers: 'b:9093', security_protocol: SASL_SSL,"
        " sasl_mechanism: PLAIN, sasl_username: u, sasl_password: sekrit-value,"
        " client: {ssl.ca.location: /etc/ca.pem}}\n"
        "topics: [t]\n"
        "sinks: {m: {type: mongodb, from: t, uri: 'mongodb://h', database: d, collection: c}}\n"
    )
    conf = client_config(load_pipeline(f).kafka)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "PLAIN"
    assert conf["sasl.username"] == "u"
    assert conf["sasl.password"] == "sekrit-value"
    assert conf["ssl.ca.location"] == "/etc/ca.pem"


def _pipeline_with_client(tmp_path: Path, client: str) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\n"
        f"kafka: {{bootstrap_servers: 'b:9093', client: {{{client}}}}}\n"
        "topics: [t]\n"
        "sinks: {m: {type: mongodb, from: t, uri: 'mongodb://h', database: d, collection: c}}\n"
    )
    return f


def test_client_settings_override_the_defaults_but_not_the_guarantees(tmp_path: Path) -> None:
    kafka = load_pipeline(
        _pipeline_with_client(
            tmp_path, "linger.ms: 5, compression.type: zstd, fetch.max.bytes: 1000000, acks: -1"
        )
    ).kafka
    produce = producer_config(kafka)
    assert produce["linger.ms"] == 5  # the documented pass-through, not our default of 20
    assert produce["compression.type"] == "zstd"
    assert produce["acks"] == "all" and produce["enable.idempotence"] is True
    consume = consumer_config(kafka, "g")
    assert consume["fetch.max.bytes"] == 1_000_000
    assert consume["enable.auto.commit"] is False and consume["group.id"] == "g"


@pytest.mark.parametrize(
    ("setting", "fixed"),
    [
        ("acks: 1", "'all'"),
        ("enable.idempotence: false", "True"),
        ("partitioner: consistent_random", "'murmur2_random'"),
        ("enable.auto.commit: true", "False"),
        ("isolation.level: read_uncommitted", "'read_committed'"),
    ],
)
def test_a_client_setting_that_would_weaken_a_guarantee_is_refused(
    tmp_path: Path, setting: str, fixed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(_pipeline_with_client(tmp_path, setting))
    name = setting.split(":")[0]
    message = str(info.value)
    assert f"kafka.client.{name}:" in message or f'kafka.client["{name}"]:' in message, message
    assert f"fixed to {fixed} by headrace" in message and "remove it" in message


def test_a_callers_defaults_yield_to_kafka_client(tmp_path: Path) -> None:
    """The worker's short linger and the sink's statistics period are defaults: the file's
    ``kafka.client`` wins over them, not the other way round."""
    kafka = load_pipeline(_pipeline_with_client(tmp_path, "linger.ms: 50")).kafka
    assert producer_config(kafka, defaults={"linger.ms": 5})["linger.ms"] == 50
    plain = load_pipeline(_pipeline_with_client(tmp_path, "socket.timeout.ms: 9000")).kafka
    assert producer_config(plain, defaults={"linger.ms": 5})["linger.ms"] == 5
    conf = consumer_config(kafka, "g", defaults={"statistics.interval.ms": 5000}, stats_cb=print)
    assert conf["statistics.interval.ms"] == 5000 and conf["stats_cb"] is print
