"""Crash-recovery benchmark: how long a new owner takes to restore a fleet's device states.

A worker (the real :class:`~pipeline.worker.loop.Worker`, LSTM-64 stream model, a ring buffer per
device) serves ``devices`` devices from the in-memory bus until every device's ring is full,
then checkpoints them all to a compacted state topic of ``partitions`` partitions on the real
broker, through the table (:func:`streams.clients.table`) that ``harstream run`` uses. Then,
``repeats`` times, a fresh worker (as after a crash) is assigned every partition: the time from
the assignment to every device restored (read the topic to its end, decode, put the states
into the store and the runtime) is :meth:`Worker.on_assigned`'s; the read alone is timed
inside the table.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Collection

import numpy as np

from pipeline.bench.e2e import stream_model
from pipeline.bench.swap import Discard
from pipeline.serving import ServingModel
from pipeline.state.checkpoint import CheckpointConfig, Checkpointer
from pipeline.swap.watcher import one_blas_thread
from pipeline.worker import Worker, WorkerConfig
from streams import clients
from streams.admin import compacted, ensure_topics
from streams.codecs import BinaryCodec, CodecConfig
from streams.kafka_config import KafkaConfig
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.protocols import TopicPartition
from streams.record import Record

SAMPLES_PER_RECORD = 32


class _TimedTable:
    """A table that notes how long each read took and how many bytes it returned."""

    def __init__(self, table) -> None:
        self.table = table
        self.reads: list[tuple[float, int]] = []

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.table.put(partition, key, value)

    def flush(self) -> None:
        self.table.flush()

    def read(self, partitions: Collection[int]) -> dict[bytes, bytes]:
        started = time.perf_counter()
        out = self.table.read(partitions)
        self.reads.append((time.perf_counter() - started, sum(map(len, out.values()))))
        return out

    def close(self) -> None:
        self.table.close()


def _serve(worker, devices: int, channels: int, ring: int) -> None:
    """Every device's ring filled through the worker, as live traffic would."""
    codec, sink = BinaryCodec(CodecConfig(channels=channels)), MemorySink(worker.source.bus)
    rng = np.random.default_rng(0)
    keys = [f"dev-{d:06d}" for d in range(devices)]
    for seq in range(0, ring, SAMPLES_PER_RECORD):
        values = rng.normal(size=(devices, SAMPLES_PER_RECORD, channels)).astype(np.float32)
        for d, key in enumerate(keys):
            record = Record(key, seq, 1_700_000_000_000 + seq * 20, 50.0, values[d])
            sink.send(worker.config.input_topic, key.encode(), codec.encode(record))
        worker.run(timeout=0.2)


def bench_recovery(
    bootstrap: str, devices: int = 10_000, hidden: int = 64, partitions: int = 6,
    repeats: int = 5,
) -> dict[str, object]:  # fmt: skip
    """Restore ``devices`` devices ``repeats`` times (see the module docstring)."""
    one_blas_thread()  # as harstream run does
    kafka = KafkaConfig(bootstrap, client_id="harstream-bench")
    model, meta = stream_model(hidden)
    channels = len(meta.channels)
    topic = f"bench.state.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [compacted(topic, partitions)])
    config = WorkerConfig(max_records=20_000)
    never = CheckpointConfig(topic=topic, every_ms=float("inf"), every_records=1 << 62)

    def worker(table) -> Worker:
        bus = MemoryBus(partitions=partitions, capacity=devices)
        return Worker(MemorySource(bus, [config.input_topic]), Discard(),
                      ServingModel.load(model, meta, "bench@v1"), config=config,
                      checkpoints=Checkpointer(table, never))  # fmt: skip

    table = clients.table(kafka, topic)
    live = worker(table)
    _serve(live, devices, channels, live.store.config.ring)
    written = live.checkpoint()
    if written != devices:
        raise RuntimeError(f"{written} device states checkpointed, expected {devices}")
    assigned = {TopicPartition(config.input_topic, p) for p in range(partitions)}
    totals, reads, state_bytes = [], [], 0
    for _ in range(repeats):
        timed = _TimedTable(table)
        fresh = worker(timed)  # a new process's worker: empty store, runtime of 1024 slots
        fresh.on_assigned(assigned)
        if fresh.stats.restored_devices != devices or fresh.checkpoints.unreadable:
            raise RuntimeError(f"restored {fresh.stats.restored_devices} of {devices} devices")
        totals.append(fresh.stats.restore_s[-1])
        (read_s, state_bytes), *_ = timed.reads
        reads.append(read_s)
    _check_restored(live, fresh)
    table.close()
    restore_s = statistics.median(totals)
    read_s = statistics.median(reads)
    decode = [total - read for total, read in zip(totals, reads, strict=True)]
    return {
        "bench": "recovery",
        "devices": devices,
        "model": f"lstm-{hidden}",
        "partitions": partitions,
        "state_bytes": state_bytes,
        "bytes_per_device": round(state_bytes / devices),
        "restore_s": round(restore_s, 3),
        "read_s": round(read_s, 3),
        "decode_restore_s": round(statistics.median(decode), 3),
        "restore_max_s": round(max(totals), 3),
        "devices_per_s": round(devices / restore_s),
        "target_s": 5.0,
    }


def _check_restored(live, fresh) -> None:
    """The fresh worker holds what the live one checkpointed (a benchmark of a broken restore
    would measure nothing)."""
    devices = [live.store.device(int(s)) for s in live.store.used_slots()]
    a, b = live.store.slots_for(devices), fresh.store.slots_for(devices)
    same = np.array_equal(live.store.ring[a], fresh.store.ring[b]) and np.array_equal(
        live.store.last_seq[a], fresh.store.last_seq[b]
    )
    ours, theirs = (w.stream_model.runtime.get_states(s) for w, s in ((live, a), (fresh, b)))
    if not same or any(not np.array_equal(ours[k], theirs[k]) for k in ours):
        raise RuntimeError("the restored device states differ from the checkpointed ones")
