"""Kafka client settings: durable producers that partition like Java/aiokafka, manual commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.config import load_pipeline
from headrace.kafka_clients import client_config, consumer_config, producer_config

SHOP = Path(__file__).resolve().parents[1] / "config" / "fixtures" / "shop.yaml"


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MYSQL_PASSWORD", "pw-for-tests-123")
    return load_pipeline(SHOP).kafka


def test_producer_is_durable_and_uses_murmur2(kafka) -> None:  # type: ignore[no-untyped-def]
    conf = producer_config(kafka)
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["partitioner"] == "murmur2_random"
    assert producer_config(kafka, **{"linger.ms": 0})["linger.ms"] == 0


def test_consumer_commits_manually_and_reads_committed(kafka) -> None:  # type: ignore[no-untyped-def]
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
