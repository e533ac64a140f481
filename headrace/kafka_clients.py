"""Kafka client settings from the pipeline file, in one place for every process.

confluent-kafka is used outside Faust (producers, sinks, publish, DLQ, benchmarks). Its
default partitioner (CRC32) differs from the Java client's and aiokafka's (murmur2), which
would put one key on different partitions depending on who wrote it; every producer here sets
``murmur2_random`` so keys co-partition with Faust's topics.

Every producer and consumer made here reports client errors to the process's fault tracker
(``error_cb``: ``headrace.faults.kafka_error_cb``, unless the caller passes its own), so
``headrace_broker_reachable`` and the ``broker_unreachable`` fault follow the brokers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headrace.config.model import CLIENT_FIXED
from headrace.faults import kafka_error_cb

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

    from headrace.config import KafkaConfig

__all__ = [
    "client_config",
    "consumer_config",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "produce_waiting",
    "producer_config",
    "watermarks",
]


def _connection(kafka: KafkaConfig) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        conf["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        conf["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    return conf


def client_config(kafka: KafkaConfig) -> dict[str, Any]:
    """librdkafka settings shared by every client: servers, security, pass-through ``client``."""
    conf = _connection(kafka)
    conf.update(kafka.client)
    return conf


#: producer defaults that ``kafka.client`` may change (throughput and memory)
PRODUCER_DEFAULTS: dict[str, Any] = {
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
}
#: producer settings the guarantees rest on: ``kafka.client`` may not change them (the pipeline
#: file's validation refuses other values; the values are ``CLIENT_FIXED``'s)
PRODUCER_FIXED: dict[str, Any] = {
    k: CLIENT_FIXED[k][0] for k in ("acks", "enable.idempotence", "partitioner")
}
#: consumer defaults that ``kafka.client`` may change
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "fetch.max.bytes": 16 * 1024 * 1024,
}
#: consumer settings the guarantees rest on
CONSUMER_FIXED: dict[str, Any] = {
    k: CLIENT_FIXED[k][0]
    for k in ("enable.auto.commit", "enable.auto.offset.store", "isolation.level")
}


def producer_config(
    kafka: KafkaConfig, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Durable, ordered, compressed producing: acks=all, idempotence, lz4, murmur2 keys.
    Precedence: ``PRODUCER_DEFAULTS`` < the caller's ``defaults`` (e.g. a shorter linger) <
    ``kafka.client`` < ``PRODUCER_FIXED`` < ``overrides`` (what the caller cannot do
    without, e.g. a transactional id or a delivery callback)."""
    conf = _connection(kafka)
    conf.update(PRODUCER_DEFAULTS)
    conf.update(defaults or {})
    conf.update(kafka.client)
    conf.update(PRODUCER_FIXED)
    conf.update(overrides)
    conf.setdefault("error_cb", kafka_error_cb)
    return conf


def consumer_config(
    kafka: KafkaConfig,
    group_id: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Manual commits, start from the earliest offset, read only committed transactions.
    Precedence: ``CONSUMER_DEFAULTS`` < the caller's ``defaults`` < ``kafka.client`` <
    ``CONSUMER_FIXED`` and the group < ``overrides``."""
    conf = _connection(kafka)
    conf.update(CONSUMER_DEFAULTS)
    conf.update(defaults or {})
    conf.update(kafka.client)
    conf.update(CONSUMER_FIXED)
    conf["group.id"] = group_id
    conf.update(overrides)
    conf.setdefault("error_cb", kafka_error_cb)
    return conf


def produce_waiting(
    producer: Producer, topic: str, value: bytes | None, key: bytes | None = None, **kw: Any
) -> None:
    """``producer.produce(topic, value, key, **kw)``, serving delivery reports while the local
    queue is full (BufferError) instead of failing: for scripts and tests that produce more
    than ``queue.buffering.max.messages`` (100,000 by default) faster than the broker takes
    them."""
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:
            producer.poll(0.1)


def make_producer(
    kafka: KafkaConfig, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> Producer:
    """A producer with ``producer_config`` (``defaults`` yield to ``kafka.client``)."""
    from confluent_kafka import Producer

    return Producer(producer_config(kafka, defaults=defaults, **overrides))


def make_consumer(
    kafka: KafkaConfig,
    group_id: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Consumer:
    """A consumer with ``consumer_config`` (``defaults`` yield to ``kafka.client``)."""
    from confluent_kafka import Consumer

    return Consumer(consumer_config(kafka, group_id, defaults=defaults, **overrides))


def ensure_topics(
    kafka: KafkaConfig,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the missing ``topics`` (name -> partitions); return the names created.

    ``config`` gives per-topic settings (e.g. ``{"cleanup.policy": "compact"}``). Topics that
    exist are left as they are; a topic created concurrently by someone else is not an error.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(kafka))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(name, partitions, 1, config=dict((config or {}).get(name, {})))
        for name, partitions in topics.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, fut in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def watermarks(consumer: Any, tp: Any, timeout: float = 30.0) -> tuple[int, int]:
    """Low and high offsets of ``tp`` asked of the broker (not cached), retrying for up to
    ``timeout`` seconds while the partition is not there yet: unknown to this client, or
    without a leader (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE: a topic just created,
    a broker just restarted, which a test and a restarted process meet alike). Other errors,
    and these past the timeout, raise ``KafkaException``."""
    import time

    from confluent_kafka import KafkaError, KafkaException

    not_yet = {
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args else None
            if code not in not_yet or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
