"""The worker gives Faust the same Kafka security settings as the confluent-kafka clients."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from headrace.config import load_pipeline
from headrace.errors import ConfigError
from streams.kafka_auth import faust_credentials


def _kafka(tmp_path: Path, settings: str):
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\n"
        f"kafka: {{bootstrap_servers: 'b:9093', {settings}}}\n"
        "topics: [t]\n"
        "sinks: {m: {type: mongodb, from: t, uri: 'mongodb://h', database: d, collection: c}}\n"
    )
    return load_pipeline(f).kafka


def test_plaintext_needs_nothing(tmp_path: Path) -> None:
    assert faust_credentials(_kafka(tmp_path, "security_protocol: PLAINTEXT")) == {}


@pytest.mark.parametrize(
    ("protocol", "mechanism", "with_ssl"),
    [("SASL_SSL", "SCRAM-SHA-512", True), ("SASL_PLAINTEXT", "PLAIN", False)],
)
def test_sasl_carries_user_password_and_ssl_only_with_sasl_ssl(
    tmp_path: Path, protocol: str, mechanism: str, with_ssl: bool
) -> None:
    kafka = _kafka(
        tmp_path,
        f"security_protocol: {protocol}, sasl_mechanism: {mechanism}, sasl_username: u, "
        "sasl_password: pw-123456",
    )
    creds = faust_credentials(kafka)["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == ("u", "pw-123456")
    assert creds.mechanism.value == mechanism and creds.protocol.value == protocol
    assert isinstance(creds.ssl_context, ssl.SSLContext) if with_ssl else creds.ssl_context is None


def test_ssl_honours_the_verification_switch(tmp_path: Path) -> None:
    kafka = _kafka(
        tmp_path, "security_protocol: SSL, client: {enable.ssl.certificate.verification: false}"
    )
    creds = faust_credentials(kafka)["broker_credentials"]
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.context.verify_mode == ssl.CERT_NONE and not creds.context.check_hostname


def test_oauthbearer_is_a_clear_error(tmp_path: Path) -> None:
    kafka = _kafka(tmp_path, "security_protocol: SASL_SSL, sasl_mechanism: OAUTHBEARER")
    with pytest.raises(ConfigError, match="OAUTHBEARER"):
        faust_credentials(kafka)
