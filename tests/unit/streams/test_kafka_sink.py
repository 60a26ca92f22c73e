"""The sink's partitioner: the same partitions as kafka-python's (and Java's) default."""

from __future__ import annotations

from kafka.partitioner import DefaultPartitioner

from streams.kafka_sink import CachedPartitioner


class _Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def topics(self):
        return set(self.partitions)

    def partitions_for_topic(self, topic):
        return set(range(self.partitions[topic])) if topic in self.partitions else None

    def available_partitions_for_topic(self, topic):
        return self.partitions_for_topic(topic)


def test_cached_partitions_equal_the_default_ones_also_after_the_topic_grows():
    cluster = _Cluster({"t": 6})
    cached, default = CachedPartitioner(max_keys=50), DefaultPartitioner()
    keys = [f"device-{i}".encode() for i in range(200)]
    for n in (6, 6, 12):  # the second round comes from the cache; then the topic grows
        cluster.partitions["t"] = n
        for key in keys:
            expected = default.partition("t", key, key, b"", b"", cluster)
            assert cached.partition("t", key, key, b"", b"", cluster) == expected
    assert len(cached._known) <= 50  # bounded
    assert {cached.partition("t", None, None, b"", b"", cluster) for _ in range(50)} <= set(
        range(12)
    )
