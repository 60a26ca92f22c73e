"""What the confluent-kafka clients share: their base properties (the connection settings of
``[kafka]``, librdkafka's log lines and errors into :mod:`logging`), a batch fetch that waits
only for its first message, and librdkafka's errors as :class:`TransportError`."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from streams.exceptions import TransportError
from streams.kafka_config import KafkaConfig


class Repeats(logging.Filter):
    """Lets a log message through once per ``every_s`` seconds: librdkafka says the same (a
    refused connection) at every retry, many times a second while a broker is away."""

    def __init__(self, every_s: float = 10.0, remember: int = 1000) -> None:
        super().__init__()
        self.every_s, self.remember = every_s, remember
        self._last: dict[tuple[str, int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.levelno, record.getMessage()), time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            return False
        if len(self._last) >= self.remember:
            self._last.clear()
        self._last[key] = now
        return True


log = logging.getLogger(__name__)
log.addFilter(Repeats())
LIBRDKAFKA = logging.getLogger("librdkafka")
"""librdkafka's own log lines (connections, retries), as kafka-python's are under ``kafka``"""
LIBRDKAFKA.addFilter(Repeats())

TRANSIENT = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
    KafkaError._TIMED_OUT_QUEUE, KafkaError._WAIT_COORD, KafkaError._RETRY,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
})  # fmt: skip
"""errors that pass when the cluster is back (librdkafka does not flag them all retriable)"""


def base_config(kafka: KafkaConfig) -> dict[str, Any]:
    """The properties every client starts from: ``[kafka]``'s connection settings, librdkafka's
    log lines through :data:`LIBRDKAFKA` (not its own stderr lines) and errors logged."""
    return {**kafka.librdkafka_config(), "logger": LIBRDKAFKA, "error_cb": _log_error}


def _log_error(error: KafkaError) -> None:
    """librdkafka's client-wide errors (brokers down, authentication): it retries by itself. A
    failed connection is in librdkafka's own log line already."""
    if error.fatal():
        level = logging.ERROR
    elif error.code() == KafkaError._TRANSPORT:
        level = logging.DEBUG
    else:
        level = logging.WARNING
    log.log(level, "Kafka client error: %s", error.str(), extra={"code": error.name()})


def transient(error: KafkaError) -> bool:
    """Whether ``error`` may pass by itself (the broker away, a leader moving)."""
    return error.retriable() or error.code() in TRANSIENT


def failure(what: str, exc: KafkaException | KafkaError) -> TransportError:
    """``what`` failed, as a :class:`TransportError` naming librdkafka's error."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    detail = f"{error.name()}: {error.str()}" if isinstance(error, KafkaError) else str(error)
    return TransportError(f"{what}: {detail}")


def fetch(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to ``max_messages`` messages, waiting at most ``timeout_s`` for the first.

    ``Consumer.consume(n, timeout)`` waits for all ``n`` (or the timeout): what is already
    fetched is taken at once instead, and only an empty queue waits (serving rebalances).
    """
    batch = consumer.consume(max_messages, 0)
    if batch or timeout_s <= 0:
        return batch
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]
