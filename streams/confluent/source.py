"""Kafka source on confluent-kafka: a consumer in a consumer group with manual commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from streams.confluent.common import base_config, failure, fetch, transient
from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.protocols import Message, RebalanceListener, TopicPartition

log = logging.getLogger(__name__)

REBALANCING = frozenset({
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST, KafkaError._STATE,
})  # fmt: skip
"""commit errors that mean the partitions are moving (the new owner takes over)"""


def consumer_config(kafka: KafkaConfig, config: SourceConfig) -> dict:
    """librdkafka properties of a group member with ``config``'s settings, committing only
    when asked (neither offsets nor their commits are automatic)."""
    return {
        **base_config(kafka),
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": config.auto_offset_reset,
        "isolation.level": "read_uncommitted",  # as kafka-python's consumer
        "fetch.max.bytes": config.fetch_max_bytes,
        "max.partition.fetch.bytes": config.max_partition_fetch_bytes,
        "session.timeout.ms": config.session_timeout_ms,
        "heartbeat.interval.ms": config.heartbeat_interval_ms,
        "max.poll.interval.ms": config.max_poll_interval_ms,
    }


class ConfluentSource:
    """A :class:`~streams.protocols.Source` reading ``topics`` as a member of a group, like
    :class:`~streams.kafka_source.KafkaSource`.

    ``listener`` is told about revoked partitions before they go (commit there) and about
    assigned ones before their first message is returned (restore state there); librdkafka
    calls it inside :meth:`poll` (and :meth:`close`) on the caller's thread while its own
    thread keeps the heartbeats going.
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
            self._consumer = Consumer(consumer_config(kafka, cfg))
        except KafkaException as exc:
            raise failure(f"cannot make a consumer for {kafka.bootstrap_servers}", exc) from exc
        self._closed = False
        self._listener = listener
        self._await_metadata(topics, cfg.metadata_timeout_s)
        hooks = {} if listener is None else {"on_assign": self._assigned,
                                             "on_revoke": self._revoked}  # fmt: skip
        self._consumer.subscribe(list(topics), **hooks)
        self._max_records = cfg.max_poll_records
        self.skipped_commits = 0
        """commits skipped because the broker was unreachable (retried at the next one)"""

    def _await_metadata(self, topics: Collection[str], timeout_s: float) -> None:
        """Know every topic's partitions before joining (as the kafka-python source does)."""
        deadline = time.monotonic() + timeout_s
        missing = list(topics)
        while missing:
            left = max(0.1, deadline - time.monotonic())
            try:
                known = self._consumer.list_topics(timeout=min(left, 5.0)).topics
            except KafkaException:  # not reachable yet
                known = {}
            missing = [t for t in missing
                       if t not in known or known[t].error is not None
                       or not known[t].partitions]  # fmt: skip
            if missing and time.monotonic() > deadline:
                self.close()
                raise TransportError(f"no partition metadata for {missing} after {timeout_s}s")
            if missing:
                time.sleep(0.2)

    def _assigned(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        self._listener.on_assigned({TopicPartition(p.topic, p.partition) for p in partitions})

    def _revoked(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        if self._closed:  # close() handed them over already, while the consumer could commit
            return
        self._listener.on_revoked({TopicPartition(p.topic, p.partition) for p in partitions})

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list[Message]:
        try:
            batch = fetch(self._consumer, min(max_records, self._max_records), timeout_s)
        except KafkaException as exc:
            raise failure("poll failed", exc) from exc
        out = []
        for m in batch:
            error = m.error()
            if error is not None:
                self._fetch_error(error, m)
                continue
            out.append(Message(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                               m.timestamp()[1]))  # fmt: skip
        return out

    def _fetch_error(self, error: KafkaError, m) -> None:
        """A fetch error in the batch: fatal ones raise, others are logged (librdkafka retries)."""
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise failure(f"consuming {m.topic()} failed", error)
        log.warning("consumer error: %s", error.str(),
                    extra={"code": error.name(), "topic": m.topic()})  # fmt: skip

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit synchronously; a commit that races a rebalance, or fails while the broker is
        away, is skipped, not fatal, as :meth:`KafkaSource.commit
        <streams.kafka_source.KafkaSource.commit>` does."""
        if offsets is None:
            parts = [tp for tp in self._consumer.position(self._consumer.assignment())
                     if tp.offset >= 0]  # fmt: skip
        else:
            parts = [KafkaTopicPartition(tp.topic, tp.partition, off)
                     for tp, off in offsets.items()]  # fmt: skip
        if not parts:
            return
        try:
            done = self._consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(exc.args[0])
            return
        for tp in done or ():
            if tp.error is not None:
                self._commit_failed(tp.error)
                return

    def _commit_failed(self, error: KafkaError) -> None:
        if error.code() == KafkaError._NO_OFFSET:
            return
        if error.code() in REBALANCING:
            log.info("offset commit skipped (a rebalance): %s", error.str())
            return
        if transient(error):
            self.skipped_commits += 1
            log.warning("offset commit skipped (retriable): %s", error.str(),
                        extra={"skipped_commits": self.skipped_commits})  # fmt: skip
            return
        raise failure("offset commit failed", error)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def highwater(self) -> dict[TopicPartition, int]:
        """The end of each assigned partition as the last fetch response told it (no I/O)."""
        out = {}
        for tp in self._consumer.assignment():
            try:
                _, end = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:  # revoked meanwhile
                continue
            if end >= 0:
                out[TopicPartition(tp.topic, tp.partition)] = end
        return out

    def close(self) -> None:
        """Leave the group (the listener sees the revocation) and close the connection.

        The listener is told before librdkafka closes: inside ``Consumer.close`` the consumer
        is being destroyed and a commit from the revocation hook fails (``_DESTROY``)."""
        if self._closed:
            return
        owned = self.assignment()
        if self._listener is not None and owned:
            self._listener.on_revoked(owned)
        self._closed = True
        try:
            self._consumer.close()
        except KafkaException as exc:
            raise failure("closing the consumer failed", exc) from exc
