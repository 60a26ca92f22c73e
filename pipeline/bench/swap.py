"""Hot-swap benchmark: what a new champion costs a busy worker, and how soon it serves.

One embedded worker serves ``devices`` devices at full speed (a producer thread keeps the
in-memory bus full) while the registry's champion flips between two LSTM versions ``swaps``
times. Measured: every hot-path interruption a swap causes (ring copies and the final
catch-up, see :mod:`pipeline.swap.watcher`), against the worker's ordinary batch time, and the time
from ``Registry.promote`` to the first prediction flushed by the new version.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np

from models.io import save_model
from models.registry import Registry
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.bench.timing import percentile
from pipeline.serving import ServingModel
from pipeline.swap.watcher import HotSwap, SwapConfig, one_blas_thread
from pipeline.worker import Worker, WorkerConfig
from streams.codecs import BinaryCodec, CodecConfig
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.record import Record

SAMPLES_PER_RECORD = 25


def _register_versions(registry, channels: int, hidden: int, directory: Path) -> None:
    spec = ModelSpec(setup="stream", cell="lstm", hidden=hidden)
    names = tuple(f"c{i}" for i in range(channels))
    meta = ModelMeta(spec, names, ("A", "B", "C", "D", "E", "F"), 50.0, (0.0,) * channels,
                     (1.0,) * channels, 128, 1)  # fmt: skip
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        path = save_model(build_model(spec, meta), meta, directory / f"v{seed}.keras")
        registry.register("bench", path, training_data="random weights (timing only)")
    registry.promote("bench", 1)


def _produce(bus, devices: int, channels: int, stop: threading.Event) -> None:
    """Rounds of one record per device, sequence numbers advancing, until ``stop``."""
    codec, sink = BinaryCodec(CodecConfig(channels=channels)), MemorySink(bus)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(devices, SAMPLES_PER_RECORD, channels)).astype(np.float32)
    keys = [f"dev-{d:06d}" for d in range(devices)]
    seq = 0
    while not stop.is_set():
        for d, key in enumerate(keys):
            record = Record(key, seq, 1_700_000_000_000 + seq * 20, 50.0, values[d])
            sink.send("sensor.raw", key.encode(), codec.encode(record))
        seq += SAMPLES_PER_RECORD


def bench_swap(devices: int = 10_000, swaps: int = 10, hidden: int = 64,
               every_s: float = 1.5) -> dict[str, object]:  # fmt: skip
    """Measure ``swaps`` hot swaps in a worker serving ``devices`` devices (see module doc)."""
    one_blas_thread()  # as harstream run does
    channels = 6
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(Path(tmp) / "registry")
        _register_versions(registry, channels, hidden, Path(tmp))
        model, meta = registry.load("bench", 1)
        bus = MemoryBus(partitions=4, capacity=4 * devices)
        worker = Worker(
            MemorySource(bus, ["sensor.raw"]), Discard(),
            ServingModel.load(model, meta, "bench@v0001", capacity=devices),
            config=WorkerConfig(max_records=5000),
            swaps=[HotSwap(registry, "bench", SwapConfig(poll_s=0.01))],
        )  # fmt: skip
        stop = threading.Event()
        producer = threading.Thread(target=_produce, args=(bus, devices, channels, stop))
        producer.start()
        # warm up: every device has a full ring before the first swap
        while worker.stats.samples < devices * worker.store.config.ring:
            worker.step()
        promoted: list[float] = []
        batch_ms: list[float] = []
        started, samples0 = time.perf_counter(), worker.stats.samples
        next_at = time.perf_counter() + every_s
        while len(worker.stats.swaps) < swaps or worker.stats.swaps[-1].first_prediction_at is None:
            if (
                len(promoted) < swaps
                and time.perf_counter() >= next_at
                and (len(worker.stats.swaps) == len(promoted))
            ):
                promoted.append(time.time())
                registry.promote("bench", 2 if len(promoted) % 2 else 1)
                next_at = time.perf_counter() + every_s
            before, t0 = len(worker.stats.swaps), time.perf_counter()
            worker.step()
            if len(worker.stats.swaps) == before:
                batch_ms.append((time.perf_counter() - t0) * 1000.0)
        elapsed = time.perf_counter() - started
        stop.set()
        while producer.is_alive():
            worker.source.poll(100_000, 0.01)  # unblock the producer
        worker.close()
    records = worker.stats.swaps
    pauses = [p for r in records for p in r.pauses_ms]
    copies = [p for r in records for p in r.pauses_ms[: r.rounds]]
    syncs = [p for r in records for p in r.pauses_ms[r.rounds :]]
    to_first = [(r.first_prediction_at - at) * 1000.0
                for r, at in zip(records, promoted, strict=True)]  # fmt: skip
    return {
        "bench": "swap",
        "devices": devices,
        "model": f"lstm-{hidden}",
        "swaps": len(records),
        "pause_p50_ms": round(percentile(pauses, 50), 2),
        "pause_p99_ms": round(percentile(pauses, 99), 2),
        "pause_max_ms": round(max(pauses), 2),
        "ring_copy_p99_ms": round(percentile(copies, 99), 2),
        "sync_p50_ms": round(percentile(syncs, 50), 2),
        "sync_p99_ms": round(percentile(syncs, 99), 2),
        "sync_batches_p50": float(np.median([r.sync_batches + 1 for r in records])),
        "prepare_p50_ms": round(
            percentile([(r.primed_at - r.noticed_at) * 1e3 for r in records], 50), 1
        ),
        "sync_wall_p50_ms": round(
            percentile([(r.swapped_at - r.primed_at) * 1e3 for r in records], 50), 1
        ),
        "batch_p50_ms": round(percentile(batch_ms, 50), 2),
        "batch_p99_ms": round(percentile(batch_ms, 99), 2),
        "rounds_p50": float(np.median([r.rounds for r in records])),
        "promotion_to_first_prediction_ms": round(percentile(to_first, 50), 1),
        "promotion_to_first_prediction_max_ms": round(max(to_first), 1),
        "samples_per_s": round((worker.stats.samples - samples0) / elapsed),
    }


class Discard:
    """A sink that drops everything (the benchmark measures the worker, not its consumers)."""

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass
