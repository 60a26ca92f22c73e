"""Kafka source: a kafka-python consumer in a consumer group with manual commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from streams.exceptions import TransportError
from streams.kafka_compat import ThreadedRebalanceListener
from streams.kafka_config import KafkaConfig
from streams.protocols import Message, RebalanceListener, TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceConfig:
    """Consumer-group settings; offsets are committed only when the caller says so."""

    group_id: str = "harstream-workers"
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 2000
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 60_000
    """a member that has not polled for this long is gone (a worker polls after every batch;
    the trainer, which trains between polls, sets more). It is also the group's rebalance
    timeout: how long a rebalance waits for a member that does not rejoin, and (plus 5 s) how
    long kafka-python waits for a JoinGroup reply. With the clients' default of 5 minutes a
    worker in CI once stayed without partitions for over 3 minutes after its first
    rebalance."""
    metadata_timeout_s: float = 30.0
    """how long to wait for the topics' partitions to be known before joining the group"""


class KafkaSource:
    """A :class:`~streams.protocols.Source` reading ``topics`` as a member of a group.

    ``listener`` is told about revoked partitions before they go (commit there) and about
    assigned ones before their first message is returned (restore state there).
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Collection[str],
        config: SourceConfig | None = None,
        listener: RebalanceListener | None = None,
    ) -> None:
        cfg = config or SourceConfig()
        try:
            self._consumer = KafkaConsumer(
                **kafka.client_kwargs(),
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset=cfg.auto_offset_reset,
                max_poll_records=cfg.max_poll_records,
                fetch_max_bytes=cfg.fetch_max_bytes,
                max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
                session_timeout_ms=cfg.session_timeout_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                max_poll_interval_ms=cfg.max_poll_interval_ms,
            )
        except KafkaError as exc:
            raise TransportError(f"cannot connect to {kafka.bootstrap_servers}: {exc}") from exc
        self._await_metadata(topics, cfg.metadata_timeout_s)
        hook = None if listener is None else ThreadedRebalanceListener(listener, self._consumer)
        self._consumer.subscribe(topics=list(topics), listener=hook)
        self._max_records = cfg.max_poll_records
        self.skipped_commits = 0
        """commits skipped because the broker was unreachable (retried at the next one)"""

    def _await_metadata(self, topics: Collection[str], timeout_s: float) -> None:
        """Know every topic's partitions before joining: a member that joins without them is
        assigned nothing for that topic until the next metadata refresh (minutes)."""
        deadline = time.monotonic() + timeout_s
        missing = list(topics)
        while missing:
            missing = [t for t in missing if not self._consumer.partitions_for_topic(t)]
            if missing and time.monotonic() > deadline:
                raise TransportError(f"no partition metadata for {missing} after {timeout_s}s")
            if missing:
                time.sleep(0.2)

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list[Message]:
        batches = self._consumer.poll(
            timeout_ms=int(timeout_s * 1000), max_records=min(max_records, self._max_records)
        )
        return [
            Message(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit; a commit that races a rebalance, or fails while the broker is away (a
        retriable error), is skipped, not fatal: the next commit (or the new owner, from the
        last committed offset, redelivering) takes over."""
        try:
            if offsets is None:
                self._consumer.commit()
            else:
                self._consumer.commit(
                    {
                        KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
                        for tp, off in offsets.items()
                    }
                )
        except (RebalanceInProgressError, CommitFailedError, IllegalGenerationError) as exc:
            log.info("offset commit skipped (a rebalance): %s", exc)
            return
        except KafkaError as exc:
            if exc.retriable:
                self.skipped_commits += 1
                log.warning("offset commit skipped (retriable): %s", exc,
                            extra={"skipped_commits": self.skipped_commits})  # fmt: skip
                return
            raise TransportError(f"offset commit failed: {exc}") from exc

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def highwater(self) -> dict[TopicPartition, int]:
        """The end of each assigned partition as the last fetch response told it (no I/O)."""
        out = {}
        for tp in self._consumer.assignment():
            try:
                end = self._consumer.highwater(tp)
            except IllegalStateError:  # revoked meanwhile
                continue
            if end is not None:
                out[TopicPartition(tp.topic, tp.partition)] = end
        return out

    def close(self) -> None:
        """Leave the group (the listener sees the revocation) and close the connection."""
        self._consumer.close(autocommit=False)
