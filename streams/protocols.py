"""The narrow interfaces every transport implements: Source, Sink, Table, the topic admin and
the rebalance hook."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from streams.admin import TopicSpec


class TopicPartition(NamedTuple):
    """A topic and partition (field-compatible with kafka-python's ``TopicPartition``)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Message:
    """One raw message as a source delivered it; ``value`` is still encoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int = -1

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class RebalanceListener(Protocol):
    """Told when partitions are taken away (before) and given (after) a rebalance."""

    def on_revoked(self, partitions: Collection[TopicPartition]) -> None: ...

    def on_assigned(self, partitions: Collection[TopicPartition]) -> None: ...


@runtime_checkable
class Source(Protocol):
    """Delivers messages in offset order per partition; offsets are committed explicitly."""

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (the next offset to read per partition), or all polled so far."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    def close(self) -> None: ...


@runtime_checkable
class Highwater(Protocol):
    """A source that knows where its partitions end (for consumer lag)."""

    def highwater(self) -> dict[TopicPartition, int]:
        """The next offset to be written, per assigned partition whose end is known."""
        ...


class Table(Protocol):
    """A compacted topic used as a key-value table, written and read by partition."""

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Set ``key`` in ``partition`` (None deletes it: a tombstone)."""
        ...

    def flush(self) -> None:
        """Block until every put so far is durable; raise if any failed."""
        ...

    def read(self, partitions: Collection[int]) -> dict[bytes, bytes]:
        """The latest value of every key in ``partitions``, read to their current end."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Sends messages keyed (and so partitioned) by device id."""

    def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every message sent so far is durable; raise if any failed."""
        ...

    def close(self) -> None: ...


class TopicAdmin(Protocol):
    """One admin connection to a cluster: creates and describes topics."""

    def create_missing(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create the topics of ``specs`` that do not exist yet (a topic created meanwhile by
        another process counts as existing); the names created, in ``specs``' order."""
        ...

    def partition_count(self, topic: str) -> int:
        """Number of partitions of ``topic`` (0 if it does not exist)."""
        ...

    def close(self) -> None: ...
