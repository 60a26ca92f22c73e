"""The in-memory transport behaves like a Kafka topic: keyed partitions, order, bounds."""

from __future__ import annotations

import threading

import pytest

from streams.exceptions import TransportError
from streams.memory import MemoryBus, MemorySink, MemorySource, partition_for
from streams.protocols import Sink, Source, TopicPartition


class Listener:
    def __init__(self):
        self.assigned, self.revoked = [], []

    def on_assigned(self, partitions):
        self.assigned.append(set(partitions))

    def on_revoked(self, partitions):
        self.revoked.append(set(partitions))


def test_implements_the_protocols():
    bus = MemoryBus()
    assert isinstance(MemorySource(bus, ["t"]), Source)
    assert isinstance(MemorySink(bus), Sink)


def test_same_key_same_partition_and_order_kept():
    bus = MemoryBus(partitions=3)
    sink = MemorySink(bus)
    for i in range(30):
        sink.send("t", f"dev-{i % 5}".encode(), str(i).encode())
    msgs = MemorySource(bus, ["t"]).poll(max_records=100)
    assert len(msgs) == 30
    by_key: dict[bytes, list[int]] = {}
    for m in msgs:
        assert m.partition == partition_for(m.key, 3)
        by_key.setdefault(m.key, []).append(int(m.value))
    assert all(v == sorted(v) for v in by_key.values())
    offsets = [m.offset for m in msgs if m.partition == msgs[0].partition]
    assert offsets == list(range(len(offsets)))


def test_poll_limits_and_commit_positions():
    bus = MemoryBus(partitions=1)
    sink = MemorySink(bus)
    for i in range(10):
        sink.send("t", b"k", bytes([i]))
    src = MemorySource(bus, ["t"])
    assert len(src.poll(max_records=4)) == 4
    src.commit()
    assert bus.committed[TopicPartition("t", 0)] == 4
    src.commit({TopicPartition("t", 0): 2})
    assert bus.committed[TopicPartition("t", 0)] == 2
    assert src.poll(timeout_s=0.0)[0].value == bytes([4])


def test_full_queue_blocks_then_fails_with_transport_error():
    bus = MemoryBus(partitions=1, capacity=2)
    sink = MemorySink(bus, send_timeout_s=0.05)
    sink.send("t", b"k", b"1")
    sink.send("t", b"k", b"2")
    with pytest.raises(TransportError, match="full"):
        sink.send("t", b"k", b"3")


def test_blocked_sender_resumes_when_consumer_drains():
    bus = MemoryBus(partitions=1, capacity=1)
    sink = MemorySink(bus, send_timeout_s=5)
    sink.send("t", b"k", b"1")
    sender = threading.Thread(target=sink.send, args=("t", b"k", b"2"))
    sender.start()
    src = MemorySource(bus, ["t"])
    got = src.poll(timeout_s=1) + src.poll(timeout_s=2)
    sender.join(timeout=5)
    assert [m.value for m in got] == [b"1", b"2"]


def test_listener_sees_assignment_and_revocation():
    bus, listener = MemoryBus(partitions=2), Listener()
    src = MemorySource(bus, ["a"], listener=listener)
    assert src.poll(timeout_s=0.0) == []
    assert listener.assigned == [{TopicPartition("a", 0), TopicPartition("a", 1)}]
    src.close()
    assert listener.revoked == listener.assigned


def test_poll_times_out_empty():
    assert MemorySource(MemoryBus(), ["empty"]).poll(timeout_s=0.01) == []
