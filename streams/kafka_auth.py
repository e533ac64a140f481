"""The worker's Kafka security settings for Faust (aiokafka), from the same ``kafka:`` keys the
confluent-kafka clients use.

``headrace worker`` runs Faust's aiokafka consumer next to confluent-kafka producers. The
producers take ``security_protocol``, ``sasl_*`` and ``kafka.client`` as librdkafka settings
(``headrace.kafka_clients``); this module gives Faust the same connection:

- ``SSL``: an SSL context trusting ``ssl.ca.location`` (else the system's CAs), with the client
  certificate ``ssl.certificate.location`` / ``ssl.key.location`` (``ssl.key.password``) when
  set; ``enable.ssl.certificate.verification: false`` turns verification off.
- ``SASL_PLAINTEXT`` / ``SASL_SSL`` with ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``:
  user name and password (``SASL_SSL`` adds the SSL context above). ``GSSAPI`` takes
  ``sasl.kerberos.service.name`` (default ``kafka``).
- ``OAUTHBEARER`` needs a token provider aiokafka cannot take from a file: a ConfigError.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from headrace.errors import ConfigError

if TYPE_CHECKING:
    from headrace.config import KafkaConfig

__all__ = ["faust_credentials", "ssl_context"]


def ssl_context(client: dict[str, Any]) -> ssl.SSLContext:
    """An SSL context from librdkafka's ``ssl.*`` settings in ``kafka.client``."""
    ctx = ssl.create_default_context(cafile=client.get("ssl.ca.location"))
    if client.get("ssl.certificate.location"):
        ctx.load_cert_chain(
            client["ssl.certificate.location"],
            client.get("ssl.key.location"),
            client.get("ssl.key.password"),
        )
    verify = client.get("enable.ssl.certificate.verification", True)
    if verify is False or str(verify).lower() == "false":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def faust_credentials(kafka: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` (``broker_credentials``) matching ``kafka``;
    empty for PLAINTEXT. ConfigError for a mechanism the worker cannot use."""
    import faust

    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(ssl_context(kafka.client))}
    context = ssl_context(kafka.client) if protocol == "SASL_SSL" else None
    mechanism = kafka.sasl_mechanism
    if mechanism == "GSSAPI":
        return {
            "broker_credentials": faust.GSSAPICredentials(
                kerberos_service_name=str(kafka.client.get("sasl.kerberos.service.name", "kafka")),
                kerberos_domain_name=kafka.client.get("sasl.kerberos.domain.name"),
                ssl_context=context,
            )
        }
    if mechanism not in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        raise ConfigError(
            f"{mechanism!r} is not supported by headrace worker (Faust's aiokafka consumer): "
            "it supports PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and GSSAPI; OAUTHBEARER needs a "
            "token provider it cannot read from the pipeline file",
            key="kafka.sasl_mechanism",
        )
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return {
        "broker_credentials": faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=mechanism,
        )
    }
