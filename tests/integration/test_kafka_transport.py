"""Sources, sinks, codecs and topic admin against the real broker, with each client library."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from corpus import bad_input, sample_record
from streams import clients
from streams.admin import TopicSpec, compacted, ensure_topics, partition_count
from streams.codecs import CodecConfig, make_codec
from streams.exceptions import DECODE_REASONS, DecodeError
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.protocols import Sink, Source, TopicPartition

pytestmark = pytest.mark.kafka
CONFIG = CodecConfig(channels=3, max_samples=64, activities=("SIT", "WALK"))


@pytest.fixture
def kafka(kafka_bootstrap, kafka_client) -> KafkaConfig:
    return KafkaConfig(kafka_bootstrap, client_id="harstream-tests", client=kafka_client)


def _drain(source: Source, want: int, timeout_s: float = 30.0):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += source.poll(max_records=1000, timeout_s=0.5)
    return got


def test_topics_are_created_idempotently(kafka, unique_topic):
    raw, state = unique_topic("raw"), unique_topic("state")
    specs = [TopicSpec(raw, partitions=3), compacted(state, partitions=2)]
    assert sorted(ensure_topics(kafka, specs)) == sorted([raw, state])
    assert ensure_topics(kafka, specs) == []
    assert partition_count(kafka, raw) == 3 and partition_count(kafka, state) == 2


@pytest.mark.parametrize("codec_name", ["binary", "json"])
def test_codec_round_trip_through_the_broker(kafka, unique_topic, codec_name):
    topic = unique_topic(codec_name)
    ensure_topics(kafka, [TopicSpec(topic, partitions=3)])
    codec = make_codec(codec_name, CONFIG)
    sent = [sample_record(n=1 + i % 5, seqs=i % 3 == 0, device=f"dev-{i % 7}") for i in range(60)]
    sink = clients.sink(kafka)
    assert isinstance(sink, Sink)
    for rec in sent:
        sink.send(topic, rec.device.encode(), codec.encode(rec))
    sink.flush(10)
    sink.close()

    source = clients.source(kafka, [topic], SourceConfig(group_id=unique_topic("g")))
    assert isinstance(source, Source)
    msgs = _drain(source, len(sent))
    source.commit()
    source.close()
    assert len(msgs) == len(sent)
    partitions: dict[bytes, set[int]] = {}
    for m in msgs:
        partitions.setdefault(m.key, set()).add(m.partition)
    assert all(len(p) == 1 for p in partitions.values())  # a device sticks to one partition
    by_device: dict[str, list] = {}
    for m in msgs:
        rec = codec.decode(m.value)
        by_device.setdefault(rec.device, []).append(rec)
    for device, recs in by_device.items():
        expected = [r for r in sent if r.device == device]
        assert len(recs) == len(expected)
        for a, b in zip(recs, expected, strict=True):  # per-partition order is kept
            np.testing.assert_array_equal(a.values, b.values)
            np.testing.assert_array_equal(a.sequence(), b.sequence())


def test_every_bad_input_is_rejected_with_its_reason_after_the_broker(kafka, unique_topic):
    topic = unique_topic("bad")
    ensure_topics(kafka, [TopicSpec(topic, partitions=1)])
    cases = [
        (codec, reason, data)
        for codec in ("binary", "json")
        for reason in DECODE_REASONS
        if (data := bad_input(codec, reason, CONFIG)) is not None
    ]
    sink = clients.sink(kafka)
    for _, _, data in cases:
        sink.send(topic, b"dev-bad", data)
    sink.send(topic, b"phone-7", make_codec("binary", CONFIG).encode(sample_record()))
    sink.flush(10)
    sink.close()

    source = clients.source(kafka, [topic], SourceConfig(group_id=unique_topic("g")))
    msgs = _drain(source, len(cases) + 1)
    source.close()
    decoder = make_codec("auto", CONFIG)
    reasons = []
    for m in msgs[:-1]:
        with pytest.raises(DecodeError) as err:
            decoder.decode(m.value)
        reasons.append(err.value.reason)
    assert reasons == [reason for _, reason, _ in cases]
    assert set(reasons) == set(DECODE_REASONS)
    assert decoder.decode(msgs[-1].value).device == "phone-7"  # valid records still pass


class _Member:
    """One consumer-group member polling in its own thread, recording what it saw."""

    def __init__(self, kafka: KafkaConfig, topic: str, group: str) -> None:
        self.assigned: set[TopicPartition] = set()
        self.revocations = 0
        self.values: list[bytes] = []
        self._stop = threading.Event()
        cfg = SourceConfig(group_id=group, session_timeout_ms=6000, heartbeat_interval_ms=500)
        self.source = clients.source(kafka, [topic], cfg, listener=self)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def on_assigned(self, partitions):
        self.assigned = set(partitions)

    def on_revoked(self, partitions):
        self.revocations += 1
        self.source.commit()  # commit what was processed before letting go
        self.assigned = set()

    def _loop(self):
        while not self._stop.is_set():
            for m in self.source.poll(max_records=500, timeout_s=0.2):
                self.values.append(m.value)
            self.source.commit()
        self.source.close()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)


def _wait(condition, timeout_s=45.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_two_consumers_split_and_rebalance_partitions(kafka, unique_topic):
    topic, group = unique_topic("group"), unique_topic("g")
    ensure_topics(kafka, [TopicSpec(topic, partitions=4)])
    everything = {TopicPartition(topic, p) for p in range(4)}
    sink = clients.sink(kafka)

    def produce(start: int, count: int) -> None:
        for i in range(start, start + count):
            sink.send(topic, f"dev-{i % 16}".encode(), str(i).encode())
        sink.flush(10)

    a = _Member(kafka, topic, group)
    try:
        assert _wait(lambda: a.assigned == everything), a.assigned
        produce(0, 200)
        b = _Member(kafka, topic, group)
        assert _wait(lambda: len(a.assigned) == 2 and len(b.assigned) == 2), (
            a.assigned,
            b.assigned,
        )
        assert a.assigned.isdisjoint(b.assigned) and a.assigned | b.assigned == everything
        assert a.revocations >= 1
        produce(200, 200)
        assert _wait(lambda: len(a.values) + len(b.values) >= 400)
        assert b.values, "the second member got a share of the new messages"
        b.stop()  # leaving the group hands its partitions back to a
        assert _wait(lambda: a.assigned == everything)
        produce(400, 100)
        assert _wait(lambda: len(a.values) + len(b.values) >= 500)
    finally:
        a.stop()
        sink.close()
    seen = [int(v) for v in a.values + b.values]
    assert sorted(set(seen)) == list(range(500))  # nothing lost across two rebalances


def test_both_clients_put_a_device_on_the_same_partition(kafka_bootstrap, unique_topic):
    """Java's murmur2 in both: a fleet sent through either client library splits alike, so
    workers of either kind find a device's state on the partition of its records."""
    pytest.importorskip("confluent_kafka", reason="the fast extra: pip install 'harstream[fast]'")
    keys = [f"dev-{i}".encode() for i in range(500)] + [b"\xff\x00", "電話-7".encode()]
    placed = {}
    for name in ("kafka-python", "confluent"):
        kafka = KafkaConfig(kafka_bootstrap, client_id="harstream-tests", client=name)
        topic = unique_topic(name)
        ensure_topics(kafka, [TopicSpec(topic, partitions=6)])
        sink = clients.sink(kafka)
        for key in keys:
            sink.send(topic, key, b"x")
        sink.flush(10)
        sink.close()
        reader = clients.source(kafka, [topic], SourceConfig(group_id=unique_topic("g")))
        placed[name] = {m.key: m.partition for m in _drain(reader, len(keys))}
        reader.close()
    assert len(placed["kafka-python"]) == len(keys)
    assert placed["confluent"] == placed["kafka-python"]
    assert len(set(placed["confluent"].values())) == 6
