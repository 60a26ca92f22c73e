"""The one place harstream makes Kafka clients, with the library ``[kafka] client`` names.

``kafka-python`` (the default, a required dependency) or ``confluent`` (confluent-kafka, on
librdkafka: the ``fast`` extra, ``pip install 'harstream[fast]'``). Both implement the same
protocols with the same semantics: offsets committed only when the caller says so, rebalance
listeners called on the polling thread's behalf (so they may commit), the Java client's murmur2
partitioner (a device lands on the same partition whichever client sent it), SSL/SASL from
:class:`~streams.kafka_config.KafkaConfig`. Neither library is imported until a client is made.

>>> from streams.kafka_config import KafkaConfig
>>> chosen(KafkaConfig())
'kafka-python'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection
from typing import TYPE_CHECKING

from streams.exceptions import ConfigError
from streams.kafka_config import KafkaClient, KafkaConfig

if TYPE_CHECKING:
    from streams.kafka_sink import SinkConfig
    from streams.kafka_source import SourceConfig
    from streams.kafka_table import TableConfig
    from streams.protocols import RebalanceListener, Sink, Source, Table, TopicAdmin

EXTRA = "pip install 'harstream[fast]'"


def chosen(kafka: KafkaConfig) -> KafkaClient:
    """The client library ``kafka`` names; a :class:`ConfigError` for an unknown one, or for
    ``confluent`` when confluent-kafka is not installed."""
    if kafka.client == "confluent":
        if importlib.util.find_spec("confluent_kafka") is None:
            raise ConfigError(
                '[kafka] client = "confluent" needs confluent-kafka, which is not installed: '
                f"install the extra: {EXTRA}"
            )
    elif kafka.client != "kafka-python":
        raise ConfigError(
            f"[kafka] client must be 'kafka-python' or 'confluent', not {kafka.client!r}"
        )
    return kafka.client


def source(
    kafka: KafkaConfig,
    topics: Collection[str],
    config: SourceConfig | None = None,
    listener: RebalanceListener | None = None,
) -> Source:
    """A consumer-group member reading ``topics`` (also a :class:`~streams.protocols.Highwater`);
    ``listener`` hears of revoked partitions before they go, of assigned ones before their first
    message."""
    if chosen(kafka) == "confluent":
        from streams.confluent.source import ConfluentSource  # confluent-kafka: only if chosen

        return ConfluentSource(kafka, topics, config, listener)
    from streams.kafka_source import KafkaSource  # kafka-python: not at start-up

    return KafkaSource(kafka, topics, config, listener)


def sink(kafka: KafkaConfig, config: SinkConfig | None = None) -> Sink:
    """A producer keyed by device id; ``flush`` raises if any send failed."""
    if chosen(kafka) == "confluent":
        from streams.confluent.sink import ConfluentSink  # confluent-kafka: only if chosen

        return ConfluentSink(kafka, config)
    from streams.kafka_sink import KafkaSink  # kafka-python: not at start-up

    return KafkaSink(kafka, config)


def table(kafka: KafkaConfig, topic: str, config: TableConfig | None = None) -> Table:
    """The compacted ``topic`` as a key-value table (device states)."""
    if chosen(kafka) == "confluent":
        from streams.confluent.table import ConfluentTable  # confluent-kafka: only if chosen

        return ConfluentTable(kafka, topic, config)
    from streams.kafka_table import KafkaTable  # kafka-python: not at start-up

    return KafkaTable(kafka, topic, config)


def admin(kafka: KafkaConfig) -> TopicAdmin:
    """An admin connection (close it when done); :mod:`streams.admin` uses it."""
    if chosen(kafka) == "confluent":
        from streams.confluent.admin import ConfluentAdmin  # confluent-kafka: only if chosen

        return ConfluentAdmin(kafka)
    from streams.kafka_admin import KafkaAdmin  # kafka-python: not at start-up

    return KafkaAdmin(kafka)
