"""In-process transport with the Kafka interface: the embedded default, tests and the demo.

A :class:`MemoryBus` holds topics of partitioned, bounded queues. A sink blocks while a queue is
full (back-pressure, never loss) and fails after ``send_timeout_s``; a source drains the
partitions of its topics round-robin and tracks offsets like a Kafka consumer.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Collection, Iterable, Mapping

from streams.exceptions import ConfigError, TransportError
from streams.protocols import Message, RebalanceListener, TopicPartition


def partition_for(key: bytes | None, partitions: int, counter: int = 0) -> int:
    """Stable partition of ``key`` (round-robin by ``counter`` for keyless messages)."""
    return (zlib.crc32(key) if key is not None else counter) % partitions


class _Partition:
    __slots__ = ("queue", "next_offset")

    def __init__(self) -> None:
        self.queue: deque[Message] = deque()
        self.next_offset = 0


class MemoryBus:
    """Topics of ``partitions`` bounded queues (``capacity`` messages each), thread-safe.

    >>> bus = MemoryBus(partitions=2)
    >>> sink = MemorySink(bus)
    >>> sink.send("t", b"dev-1", b"x")
    >>> [m.value for m in MemorySource(bus, ["t"]).poll()]
    [b'x']
    """

    def __init__(self, partitions: int = 4, capacity: int = 10_000) -> None:
        if partitions < 1 or capacity < 1:
            raise ConfigError("partitions and capacity must be >= 1")
        self.partitions = partitions
        self.capacity = capacity
        self._topics: dict[str, list[_Partition]] = {}
        self._cond = threading.Condition()
        self.committed: dict[TopicPartition, int] = {}

    def _topic(self, name: str) -> list[_Partition]:
        parts = self._topics.get(name)
        if parts is None:
            parts = self._topics[name] = [_Partition() for _ in range(self.partitions)]
        return parts

    def put(self, topic: str, key: bytes | None, value: bytes, timeout_s: float) -> None:
        with self._cond:
            parts = self._topic(topic)
            pid = partition_for(key, self.partitions, sum(p.next_offset for p in parts))
            part = parts[pid]
            if not self._cond.wait_for(lambda: len(part.queue) < self.capacity, timeout_s):
                raise TransportError(f"{topic}[{pid}] full for {timeout_s}s: nobody is consuming")
            ts = int(time.time() * 1000)
            part.queue.append(Message(topic, pid, part.next_offset, key, value, ts))
            part.next_offset += 1
            self._cond.notify_all()

    def take(self, topics: Iterable[str], max_records: int, timeout_s: float) -> list[Message]:
        with self._cond:
            queues = [p.queue for t in topics for p in self._topic(t)]

            def ready() -> bool:
                return any(queues)

            if not self._cond.wait_for(ready, timeout_s):
                return []
            out: list[Message] = []
            while len(out) < max_records and any(queues):
                for q in queues:  # round-robin keeps partitions fair, order within each
                    if q and len(out) < max_records:
                        out.append(q.popleft())
            self._cond.notify_all()
            return out

    def depth(self, topic: str) -> int:
        """Messages waiting in ``topic``."""
        with self._cond:
            return sum(len(p.queue) for p in self._topic(topic))

    def end_offsets(self, topic: str) -> dict[TopicPartition, int]:
        """The next offset of each partition of ``topic``."""
        with self._cond:
            return {
                TopicPartition(topic, i): p.next_offset for i, p in enumerate(self._topic(topic))
            }

    def partitions_of(self, topic: str) -> list[TopicPartition]:
        with self._cond:
            return [TopicPartition(topic, i) for i in range(len(self._topic(topic)))]


class MemorySource:
    """A :class:`~streams.protocols.Source` over a :class:`MemoryBus` (one consumer)."""

    def __init__(
        self,
        bus: MemoryBus,
        topics: Collection[str],
        listener: RebalanceListener | None = None,
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        self._listener = listener
        self._assigned: set[TopicPartition] | None = None
        self._positions: dict[TopicPartition, int] = {}

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list[Message]:
        if self._assigned is None:
            self._assigned = {tp for t in self.topics for tp in self.bus.partitions_of(t)}
            if self._listener is not None:
                self._listener.on_assigned(set(self._assigned))
        msgs = self.bus.take(self.topics, max_records, timeout_s)
        for m in msgs:
            self._positions[m.tp] = m.offset + 1
        return msgs

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self.bus.committed.update(self._positions if offsets is None else offsets)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned or ())

    def highwater(self) -> dict[TopicPartition, int]:
        ends = {tp: n for t in self.topics for tp, n in self.bus.end_offsets(t).items()}
        return {tp: n for tp, n in ends.items() if tp in (self._assigned or ())}

    def close(self) -> None:
        if self._assigned and self._listener is not None:
            self._listener.on_revoked(set(self._assigned))
        self._assigned = set()


class MemorySink:
    """A :class:`~streams.protocols.Sink` onto a :class:`MemoryBus`; blocks while full."""

    def __init__(self, bus: MemoryBus, send_timeout_s: float = 30.0) -> None:
        self.bus = bus
        self.send_timeout_s = send_timeout_s

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.bus.put(topic, key, value, self.send_timeout_s)

    def flush(self, timeout_s: float | None = None) -> None:
        """Messages are in the bus as soon as ``send`` returns."""

    def close(self) -> None:
        """Nothing to release."""


class MemoryTable:
    """A :class:`~streams.protocols.Table` in memory (tests and the embedded worker).

    >>> table = MemoryTable()
    >>> table.put(1, b"dev-1", b"state")
    >>> table.read([0]), table.read([1])
    ({}, {b'dev-1': b'state'})
    """

    def __init__(self) -> None:
        self._parts: dict[int, dict[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        with self._lock:
            part = self._parts.setdefault(partition, {})
            if value is None:
                part.pop(key, None)
            else:
                part[key] = value

    def flush(self) -> None:
        """Puts are visible as soon as they return."""

    def read(self, partitions: Collection[int]) -> dict[bytes, bytes]:
        with self._lock:
            return {k: v for p in partitions for k, v in self._parts.get(p, {}).items()}

    def close(self) -> None:
        """Nothing to release."""
