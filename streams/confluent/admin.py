"""Topic admin through confluent-kafka's admin client (see :mod:`streams.admin` for the API)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.confluent.common import base_config, failure
from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig

if TYPE_CHECKING:
    from streams.admin import TopicSpec

METADATA_TIMEOUT_S = 10.0
"""the longest one metadata request waits (librdkafka retries a down cluster until then, where
kafka-python fails at once): :func:`~streams.admin.until_reachable` retries after it"""


class ConfluentAdmin:
    """A :class:`~streams.protocols.TopicAdmin` on one confluent-kafka admin client."""

    def __init__(self, kafka: KafkaConfig) -> None:
        self.kafka = kafka
        self._timeout_s = min(kafka.request_timeout_ms / 1000, METADATA_TIMEOUT_S)
        try:
            self._admin = AdminClient(base_config(kafka))
        except KafkaException as exc:
            where = kafka.bootstrap_servers
            raise failure(f"cannot make an admin client for {where}", exc) from exc

    def _topics(self) -> dict:
        """Every topic's metadata (all of them: asking for one may create it on a cluster that
        auto-creates topics)."""
        try:
            return self._admin.list_topics(timeout=self._timeout_s).topics
        except KafkaException as exc:
            raise failure(f"cannot reach {self.kafka.bootstrap_servers}", exc) from exc
        finally:
            self._admin.poll(0)  # librdkafka's log lines and errors

    def create_missing(self, specs: Sequence[TopicSpec]) -> list[str]:
        existing = set(self._topics())
        new = [NewTopic(s.name, s.partitions, s.replication, config=dict(s.configs))
               for s in specs if s.name not in existing]  # fmt: skip
        if not new:
            return []
        futures = self._admin.create_topics(new, request_timeout=self._timeout_s)
        created = set()
        for name, future in futures.items():
            try:
                future.result()
                created.add(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # not made meanwhile
                    raise failure(f"creating topic {name} failed", exc) from exc
        self._await_metadata(created)
        return [s.name for s in specs if s.name in created]

    def _await_metadata(self, names: set[str]) -> None:
        """Until the cluster's metadata shows the topics created (as kafka-python's
        ``create_topics(wait_for_metadata=True)``)."""
        deadline = time.monotonic() + self._timeout_s
        while names:
            known = self._topics()
            names = {n for n in names if n not in known or not known[n].partitions}
            if names and time.monotonic() > deadline:
                raise TransportError(f"topics {sorted(names)} created but not in the metadata")
            if names:
                time.sleep(0.1)

    def partition_count(self, topic: str) -> int:
        metadata = self._topics().get(topic)
        return len(metadata.partitions) if metadata is not None and metadata.error is None else 0

    def close(self) -> None:
        self._admin.poll(0)
