"""Engine benchmark: device-steps per second of the batched NumPy runtime on one core, against
the approach users write first (one Keras call per message, carrying that device's state); and
the worker's own CPU (no Kafka) with devices at the model's rate and at other rates, so that
what resampling costs shows."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

import keras
import numpy as np
from threadpoolctl import threadpool_limits

from models.hmm import Grammar
from models.refine import REFINER, refiner_channels
from models.refiner_runtime import LAG_KEY
from models.runtime import StreamRuntime
from models.smoothing import lag_samples
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.bench.swap import Discard
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from pipeline.worker.state_store import StateStore, StoreConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay

CHANNELS = tuple(f"c{i}" for i in range(6))
CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")


PHONE = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
"""channels a gravity-frame model reads (it has 5 inputs)"""


def _meta(cell: str, hidden: int, frame: str = "device", members: int = 1) -> ModelMeta:
    spec = ModelSpec(setup="stream", cell=cell, hidden=hidden, frame=frame, members=members)
    inputs = 5 if frame == "gravity" else 6
    channels = PHONE if frame == "gravity" else CHANNELS
    return ModelMeta(spec, channels, CLASSES, 50.0, (0.0,) * inputs, (1.0,) * inputs, 128, 1)


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def engine_rate(
    runtime: StreamRuntime, devices: int, repeats: int = 5, host: list[float] | None = None
) -> float:
    """Median device-steps/s of ``step`` advancing ``devices`` devices by one sample each, over
    ``repeats`` rounds after one round of warm-up; with ``host``, :func:`host_gflops` after
    each counted round is appended to it (the machine's speed in the same rounds)."""
    runtime.ensure_capacity(devices)
    rng = np.random.default_rng(0)
    slots = rng.permutation(devices)
    x = rng.normal(size=(devices, len(CHANNELS))).astype(np.float32)
    calls = max(3, min(2000, 200_000 // devices))
    rates = []
    for round_ in range(repeats + 1):  # the first round warms up (buffers, caches): not counted
        start = time.perf_counter()
        for _ in range(calls):
            runtime.step(slots, x)
        rates.append(devices * calls / (time.perf_counter() - start))
        if host is not None and round_:
            host.append(host_gflops())
    return statistics.median(rates[1:])


_GEMM = (1024, 71, 256)
"""the product one LSTM-64 layer computes per block of 1,024 devices (6 inputs, 64 h, 1)"""


def host_gflops(calls: int = 50) -> float:
    """Float32 GFLOP/s of one core on :data:`_GEMM`, the runtime's main product, alone: how fast
    the machine is at the moment, to read a rate beside (shared hosts vary by 2x)."""
    m, k, n = _GEMM
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
    out = np.empty((m, n), np.float32)
    with threadpool_limits(limits=1):
        np.matmul(a, b, out=out)
        start = time.perf_counter()
        for _ in range(calls):
            np.matmul(a, b, out=out)
        return 2 * m * k * n * calls / (time.perf_counter() - start) / 1e9


def naive_rate(model, hidden: int, cell: str, devices: int = 100, messages: int = 300) -> float:
    """Device-steps/s of one Keras call per one-sample message with that device's own state."""
    x_in = keras.Input((1, len(CHANNELS)), batch_size=1)
    states = [keras.Input((hidden,), batch_size=1) for _ in range(2 if cell == "lstm" else 1)]
    layer = model.get_layer(f"{cell}_0")
    rnn = type(layer).from_config({**layer.get_config(), "return_state": True,
                                   "return_sequences": False, "name": "step"})  # fmt: skip
    normed = model.get_layer("normalise")(x_in)
    out = rnn(normed, initial_state=states if cell == "lstm" else states[0])
    new_states = list(out[1:])
    probs = model.get_layer("activity")(out[0])
    step = keras.Model([x_in, *states], [probs, *new_states])
    rnn.set_weights(layer.get_weights())
    rng = np.random.default_rng(0)
    state = {d: [np.zeros((1, hidden), np.float32) for _ in states] for d in range(devices)}
    sample = rng.normal(size=(1, 1, len(CHANNELS))).astype(np.float32)
    for d in range(3):  # warm up
        step.predict_on_batch([sample, *state[d]])
    start = time.perf_counter()
    for i in range(messages):
        d = i % devices
        result = step.predict_on_batch([sample, *state[d]])
        state[d] = list(result[1:])
    return messages / (time.perf_counter() - start)


def bench_engine(
    device_counts: tuple[int, ...] = (1, 100, 1_000, 10_000, 100_000),
    cells: tuple[str, ...] = ("lstm", "gru"),
    hidden: int = 64,
) -> list[dict[str, object]]:
    """One row per (cell, devices) with the runtime's and the naive baseline's rates, and the
    host's float32 GEMM speed in the same rounds (:func:`host_gflops`)."""
    rows = []
    with threadpool_limits(limits=1):
        for cell in cells:
            meta = _meta(cell, hidden)
            model = build_model(meta.spec, meta)
            baseline = naive_rate(model, hidden, cell)
            runtime = StreamRuntime.from_keras(model, meta, capacity=1)
            for devices in device_counts:
                host: list[float] = []
                rate = engine_rate(runtime, devices, host=host)
                rows.append(
                    {
                        "bench": "engine",
                        "cell": cell,
                        "hidden": hidden,
                        "devices": devices,
                        "device_steps_per_s": round(rate),
                        "baseline_device_steps_per_s": round(baseline),
                        "speedup": round(rate / baseline, 1),
                        "host_gemm_gflops": round(statistics.median(host), 1),
                        "threads": 1,
                    }
                )
    return rows


def bench_frame(devices: int = 10_000, cell: str = "lstm", hidden: int = 64) -> list[dict]:
    """The runtime on the raw axes and in the gravity frame, side by side (rounds alternating):
    device-steps/s of each and what the frame costs."""
    rate = _side_by_side({frame: _meta(cell, hidden, frame) for frame in ("device", "gravity")},
                         devices)  # fmt: skip
    return [
        {"bench": "engine-frame", "cell": cell, "hidden": hidden, "devices": devices,
         "frame": frame, "device_steps_per_s": round(rate[frame]),
         "frame_cost": round(1 - rate[frame] / rate["device"], 3), "threads": 1}
        for frame in rate
    ]  # fmt: skip


def bench_ensemble(
    devices: int = 10_000, cell: str = "lstm", hidden: int = 64, members: tuple[int, ...] = (1, 3)
) -> list[dict]:
    """One model against ensembles of ``members`` models (their weights stacked, every member
    advanced in the same call), side by side: device-steps/s of each and its cost against one
    model (``time_vs_one``: how many times longer a step takes)."""
    rate = _side_by_side({k: _meta(cell, hidden, members=k) for k in members}, devices)
    return [
        {"bench": "engine-ensemble", "cell": cell, "hidden": hidden, "devices": devices,
         "members": k, "device_steps_per_s": round(rate[k]),
         "member_steps_per_s": round(k * rate[k]),
         "time_vs_one": round(rate[members[0]] / rate[k], 2), "threads": 1}
        for k in members
    ]  # fmt: skip


def _side_by_side(metas: dict, devices: int, rounds: int = 3) -> dict:
    """Median :func:`engine_rate` of a runtime per ``metas`` entry (random weights), measured
    in alternating rounds so that every entry sees the same machine."""
    runtimes = {key: StreamRuntime.from_keras(build_model(meta.spec, meta), meta, capacity=1)
                for key, meta in metas.items()}  # fmt: skip
    measured: dict = {key: [] for key in runtimes}
    with threadpool_limits(limits=1):
        for _ in range(rounds):
            for key, runtime in runtimes.items():
                measured[key].append(engine_rate(runtime, devices))
    return {key: statistics.median(rates) for key, rates in measured.items()}


def bench_memory(devices: int = 100_000, cell: str = "lstm", hidden: int = 64) -> dict:
    """Bytes per device: hidden state (runtime) and ring buffer + bookkeeping (store), from
    the arrays and from the process's resident memory growth."""
    meta = _meta(cell, hidden)
    runtime = StreamRuntime.from_keras(build_model(meta.spec, meta), meta, capacity=1)
    before = _rss_bytes()
    store = StateStore(len(CHANNELS), StoreConfig(ring=128, initial_capacity=devices),
                       on_grow=runtime.ensure_capacity)  # fmt: skip
    slots = store.slots_for([f"device-{i:06d}" for i in range(devices)])
    runtime.step(slots, np.zeros((devices, len(CHANNELS)), np.float32))
    store.ring[slots] = 1.0  # touch every page
    grown = _rss_bytes() - before
    state_bytes = runtime.memory_bytes() / runtime.capacity
    return {
        "bench": "memory",
        "cell": cell,
        "hidden": hidden,
        "devices": devices,
        "hidden_state_bytes_per_device": round(state_bytes),
        "store_bytes_per_device": round(store.memory_bytes() / store.capacity),
        "rss_bytes_per_device": round(grown / devices),
    }


class _Replayed:
    """A :class:`~streams.protocols.Source` handing out prepared messages, batch by batch."""

    def __init__(self, messages: list) -> None:
        self._messages, self._at = messages, 0

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list:
        batch = self._messages[self._at : self._at + max_records]
        self._at += len(batch)
        return batch

    def commit(self, offsets=None) -> None:
        pass

    def assignment(self) -> set:
        return set()

    def close(self) -> None:
        pass


def _fleet_messages(devices: int, seconds: float, rate: float) -> tuple[list, int]:
    """A synthetic fleet of ``devices`` at ``rate`` Hz as prepared messages (one second of
    samples per record), and its sample count."""
    data = simulate(SyntheticConfig(devices=devices, duration_s=seconds, rate_hz=rate,
                                    gap_prob=0.0, seed=3))  # fmt: skip
    bus = MemoryBus(partitions=6, capacity=10_000_000)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=max(1, round(rate))))
    return MemorySource(bus, ["sensor.raw"]).poll(10_000_000, 0), data.n_samples


def _worker_run(model, meta: ModelMeta, messages: list, samples: int, devices: int,
                config: WorkerConfig,
                refiner: tuple | None = None) -> tuple[float, float, float]:  # fmt: skip
    """The worker alone (``messages`` in, predictions built and dropped; the model's
    ``refiner`` with it, if given), one core: input samples/s, model steps/s, and the share of
    its time spent resampling."""
    serving = ServingModel.load(model, meta, "bench@v1", capacity=devices, refiner=refiner)
    worker = Worker(_Replayed(messages), Discard(), serving, config=config)
    spent = [0.0]
    resample = worker.resampler.resample

    def timed(runs, slots):
        started = time.perf_counter()
        out = resample(runs, slots)
        spent[0] += time.perf_counter() - started
        return out

    worker.resampler.resample = timed
    start = time.perf_counter()
    worker.run(count=len(messages), timeout=1.0)
    elapsed = time.perf_counter() - start
    steps = int(worker.store.seen[worker.store.used_slots()].sum())
    assert worker.stats.samples == samples, (worker.stats.samples, samples)
    return samples / elapsed, steps / elapsed, spent[0] / elapsed


def bench_rates(
    devices: int = 10_000, rates: tuple[float, ...] = (50.0, 100.0), seconds: float = 4.0,
    hidden: int = 64, rounds: int = 3,
) -> list[dict[str, object]]:  # fmt: skip
    """The worker alone (prepared messages in, predictions built and dropped) serving a 50 Hz
    LSTM to ``devices`` devices at each of ``rates``, rounds alternating between the rates:
    input samples/s, model steps/s, and the share of the time spent resampling (medians)."""
    meta = _meta("lstm", hidden)
    model = build_model(meta.spec, meta)
    prepared = {rate: _fleet_messages(devices, seconds, rate) for rate in rates}
    config = WorkerConfig(max_records=5000)
    measured: dict[float, list[tuple[float, float, float]]] = {rate: [] for rate in rates}
    with threadpool_limits(limits=1):
        for _ in range(rounds):
            for rate in rates:
                measured[rate].append(_worker_run(model, meta, *prepared[rate], devices, config))
    return [
        {
            "bench": "worker-rates",
            "cell": "lstm",
            "hidden": hidden,
            "devices": devices,
            "device_rate_hz": rate,
            "model_rate_hz": meta.rate_hz,
            "samples_per_s": round(statistics.median(m[0] for m in measured[rate])),
            "model_steps_per_s": round(statistics.median(m[1] for m in measured[rate])),
            "resample_share": round(statistics.median(m[2] for m in measured[rate]), 3),
            "rounds": rounds,
            "threads": 1,
        }  # fmt: skip
        for rate in rates
    ]


def bench_delay(
    devices: int = 10_000, delays_ms: tuple[float, ...] = (0.0, 1000.0, 2000.0),
    seconds: float = 4.0, hidden: int = 64, rounds: int = 3,
) -> list[dict[str, object]]:  # fmt: skip
    """The worker alone serving a 50 Hz LSTM to ``devices`` 50 Hz devices with each label
    delay (``[worker] delay_ms``; the first the reference), smoothed by the centred mean and,
    for delays > 0, by the fixed-lag HMM smoother (a grammar with a lag temperature for it),
    and by the smoother mixed with a refiner of that lag (:data:`models.refine.REFINER`), rounds
    alternating: input samples/s and what the delay costs (``time_vs_first``: how many times
    longer)."""
    meta = _meta("lstm", hidden)
    model = build_model(meta.spec, meta)
    messages, samples = _fleet_messages(devices, seconds, meta.rate_hz)
    k = len(CLASSES)
    sticky = np.full((k, k), 0.01 / (k - 1)) + np.eye(k) * (0.99 - 0.01 / (k - 1))
    ways = ("mean", "hmm", "refined")
    runs = [(ms, how) for ms in delays_ms for how in (ways if ms > 0 else ways[:1])]
    measured: dict[tuple, list[float]] = {run: [] for run in runs}
    with threadpool_limits(limits=1):
        for _ in range(rounds):
            for ms, how in runs:
                lags = ((ms, 0.05, float("nan"), float("nan")),) if how != "mean" else ()
                grammar = Grammar(tuple(map(tuple, sticky)), (1.0 / k,) * k, 1.0, False, lags=lags)
                config = WorkerConfig(max_records=5000, delay_ms=ms)
                served = replace(meta, grammar=grammar)
                refiner = _refiner(lag_samples(ms, meta.rate_hz)) if how == "refined" else None
                measured[ms, how].append(_worker_run(model, served, messages, samples, devices,
                                                     config, refiner)[0])  # fmt: skip
    rate = {run: statistics.median(measured[run]) for run in runs}
    return [
        {"bench": "worker-delay", "cell": "lstm", "hidden": hidden, "devices": devices,
         "delay_ms": ms, "smoother": how if ms > 0 else "-", "samples_per_s": round(rate[ms, how]),
         "time_vs_first": round(rate[runs[0]] / rate[ms, how], 2), "rounds": rounds,
         "threads": 1}
        for ms, how in runs
    ]  # fmt: skip


def _refiner(lag: int) -> tuple[keras.Model, ModelMeta]:
    """A refiner of ``lag`` samples over :data:`CLASSES` (its weights as built: the cost is the
    same)."""
    k = len(CLASSES)
    meta = ModelMeta(REFINER, refiner_channels(CLASSES), CLASSES, 50.0, (0.0,) * 2 * k,
                     (1.0,) * 2 * k, 1024, 512, provenance={LAG_KEY: lag})  # fmt: skip
    return build_model(REFINER, meta), meta
