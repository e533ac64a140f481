"""Is a running pipeline idle? Used by ``headrace run --until-idle``.

Idle means: every active consumer group that reads one of the pipeline's topics has committed
up to the high watermark of every partition it reads (lag 0). Groups are found by asking the
broker, not by name, so this works for Faust workers and sinks alike; groups without members
(left over from earlier runs) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from headrace.kafka_clients import client_config

if TYPE_CHECKING:
    from headrace.config import KafkaConfig

__all__ = ["active_group_lag"]


def active_group_lag(
    kafka: KafkaConfig, topics: Iterable[str], timeout: float = 10.0
) -> dict[str, int]:
    """group id -> total lag over ``topics``, for every group with members reading them."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    wanted = set(topics)
    admin = AdminClient(client_config(kafka))
    listing = admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout)
    ids = [g.group_id for g in listing.valid]
    if not ids:
        return {}
    described = admin.describe_consumer_groups(ids, request_timeout=timeout)
    active: dict[str, set[tuple[str, int]]] = {}
    for gid, fut in described.items():
        desc = fut.result(timeout=timeout)
        parts = {
            (tp.topic, tp.partition)
            for m in desc.members
            for tp in (m.assignment.topic_partitions if m.assignment else [])
            if tp.topic in wanted
        }
        if parts:
            active[gid] = parts
    if not active:
        return {}
    from confluent_kafka import Consumer

    probe = Consumer({**client_config(kafka), "group.id": "_headrace_cli.idle-probe"})
    try:
        lags: dict[str, int] = {}
        for gid, parts in active.items():
            request = [
                ConsumerGroupTopicPartitions(gid, [TopicPartition(t, p) for t, p in sorted(parts)])
            ]
            result = admin.list_consumer_group_offsets(request)[gid].result(timeout=timeout)
            lag = 0
            for tp in result.topic_partitions:
                _low, high = probe.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout
                )
                committed = tp.offset if tp.offset >= 0 else 0
                lag += max(0, high - committed)
            lags[gid] = lag
        return lags
    finally:
        probe.close()
