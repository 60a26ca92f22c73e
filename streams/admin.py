"""Idempotent topic creation with partition counts and configs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig


@dataclass(frozen=True)
class TopicSpec:
    """A topic to exist: name, partitions, replication and topic configs."""

    name: str
    partitions: int = 1
    replication: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)


def compacted(name: str, partitions: int = 1, replication: int = 1) -> TopicSpec:
    """A log-compacted topic (latest value per key), as state changelogs need."""
    return TopicSpec(name, partitions, replication, {"cleanup.policy": "compact"})


def ensure_topics(kafka: KafkaConfig, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Existing topics are left as they are, so calling this again is harmless.
    """
    specs = list(specs)
    try:
        admin = KafkaAdminClient(**kafka.client_kwargs())
    except KafkaError as exc:
        raise TransportError(f"cannot reach {kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        created: list[str] = []
        for spec in specs:
            if spec.name in existing:
                continue
            topic = NewTopic(spec.name, spec.partitions, spec.replication, None, dict(spec.configs))
            try:
                admin.create_topics([topic], wait_for_metadata=True)
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process
        return created
    except KafkaError as exc:
        raise TransportError(f"creating topics failed: {exc}") from exc
    finally:
        admin.close()


def partition_count(kafka: KafkaConfig, topic: str) -> int:
    """Number of partitions of ``topic`` (0 if it does not exist)."""
    admin = KafkaAdminClient(**kafka.client_kwargs())
    try:
        described = admin.describe_topics([topic])
        return len(described[0]["partitions"]) if described else 0
    finally:
        admin.close()
