"""Idempotent topic creation with partition counts and configs, retried while the cluster is
unreachable; through the client library ``[kafka] client`` names (:mod:`streams.clients`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from streams import clients
from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


def until_reachable(
    call: Callable[[], T],
    timeout_s: float,
    on_retry: Callable[[TransportError, float], None] | None = None,
    backoff_s: tuple[float, float] = (1.0, 10.0),
) -> T:
    """``call()``, tried again while it raises :class:`TransportError` until ``timeout_s`` have
    passed (then the last error is raised); ``on_retry(error, seconds_left)`` before each wait.

    For a process's first contact with the cluster, so that a worker started beside a broker that
    is still starting (or restarting) waits for it. ``call`` must be safe to repeat.

    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise TransportError("down")
    ...     return "up"
    >>> until_reachable(flaky, timeout_s=5, backoff_s=(0.01, 0.01)), len(tries)
    ('up', 3)
    """
    deadline = time.monotonic() + timeout_s
    wait, longest = backoff_s
    while True:
        try:
            return call()
        except TransportError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if on_retry is not None:
                on_retry(exc, left)
            time.sleep(min(wait, left))
            wait = min(wait * 2, longest)


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
    admin = clients.admin(kafka)
    try:
        created = admin.create_missing(list(specs))
    finally:
        admin.close()
    if created:
        log.info("topics created", extra={"topics": created})
    return created


def partition_count(kafka: KafkaConfig, topic: str) -> int:
    """Number of partitions of ``topic`` (0 if it does not exist)."""
    admin = clients.admin(kafka)
    try:
        return admin.partition_count(topic)
    finally:
        admin.close()
