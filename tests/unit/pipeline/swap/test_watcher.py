"""Hot swap on the in-memory bus: a new champion is taken between batches, every sample is
predicted once, and the new model's states are those it would have had over the whole stream."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import keras
import numpy as np
import pytest

from corpus import dataset_slice
from models.hmm import Grammar
from models.io import load_model, load_refiner, save_model
from models.refine import refiner_channels
from models.refiner_runtime import LAG_KEY, RefinerRuntime
from models.registry import Registry
from models.seq2seq import build_seq2seq
from models.smoothing import as_served
from models.spec import ModelMeta, ModelSpec
from models.training import predict_streams
from models.zoo import build_model
from pipeline.serving import ServingModel
from pipeline.swap.watcher import HotSwap, SwapConfig, SwapError
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay

NAME = "har"


@pytest.fixture(scope="module")
def fleet():
    # 110 samples per device: the worker's 128-sample ring holds each whole stream
    return simulate(SyntheticConfig(devices=24, duration_s=2.2, gap_prob=0.0, seed=9))


@pytest.fixture
def registry(tmp_path, fleet):
    """Versions 1 and 2 (different weights), 3 (reads other channels), 4 (at 100 Hz), 5 (in
    m/s²) and 6 (an ensemble of three); v1 is champion."""
    registry = Registry(tmp_path / "registry")
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    meta = ModelMeta(spec, fleet.channels, fleet.activities, 50.0, (0.0,) * 6, (0.5,) * 6, 64, 1)
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        registry.register(NAME, save_model(build_model(spec, meta), meta, tmp_path / "m.keras"))
    other = ModelMeta(spec, ("a", "b", "c"), fleet.activities, 50.0, (0.0,) * 3, (1.0,) * 3, 64, 1)
    registry.register(NAME, save_model(build_model(spec, other), other, tmp_path / "o.keras"))
    for changed in (
        replace(meta, rate_hz=100.0),
        replace(meta, units={**meta.units, "acceleration": "m/s2"}),
    ):
        registry.register(NAME, save_model(build_model(spec, changed), changed,
                                           tmp_path / "c.keras"))  # fmt: skip
    three = replace(meta, spec=replace(spec, members=3))
    registry.register(NAME, save_model(build_model(three.spec, three), three, tmp_path / "e.keras"))
    registry.promote(NAME, 1)
    return registry


def _worker(registry, bus, out, config=None):
    model, meta = registry.load(NAME, 1)
    swap = HotSwap(registry, NAME, config or SwapConfig(poll_s=0.02))
    serving = ServingModel.load(model, meta, f"{NAME}@v0001")
    return Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), serving,
                  config=WorkerConfig(emit="every", max_records=40), swaps=[swap])  # fmt: skip


def _predictions(out) -> list[dict]:
    source = MemorySource(out, ["har.predictions"])
    return [json.loads(m.value) for m in source.poll(max_records=10_000_000, timeout_s=0)]


def _per_sample(messages) -> dict[tuple[str, int], tuple[str, list[float]]]:
    """(device, seq) -> (version, probs); fails on a sample predicted twice."""
    got = {}
    for m in messages:
        for seq, probs in zip(m["steps"]["seq"], m["steps"]["probs"], strict=True):
            assert (m["device"], seq) not in got, f"{m['device']} {seq} predicted twice"
            got[m["device"], seq] = (m["model"], probs)
    return got


def _offline(registry, version, fleet):
    model, _ = registry.load(NAME, version)
    probs = predict_streams(model, [s.values for s in fleet.streams])
    return {s.device: dict(zip(s.sequence().tolist(), p, strict=True))
            for s, p in zip(fleet.streams, probs, strict=True)}  # fmt: skip


def _wait_for_swaps(worker, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while len(worker.stats.swaps) < count:
        assert time.monotonic() < deadline, "the worker never swapped"
        worker.step()


def _wait_for_samples(worker, samples, timeout=30.0):
    deadline = time.monotonic() + timeout
    while worker.stats.samples < samples:
        assert time.monotonic() < deadline, "the fleet ran out before the worker saw enough"
        worker.step()


def _busy(worker, fleet, bus) -> threading.Thread:
    """The fleet replayed into ``bus`` by a thread (returned), the worker stepped until it saw
    every device and 800 samples."""
    producer = threading.Thread(
        target=replay,
        args=(fleet, MemorySink(bus), ReplayConfig(samples_per_record=5, speed=2.0)),
    )
    producer.start()
    while len(worker.store) < len(fleet.streams) or worker.stats.samples < 800:
        worker.step()
    return producer


ONE_DEVICE_A_BATCH = SwapConfig(poll_s=0.02, catch_up_samples=1, max_rounds=3,
                                sync_budget_ms=0.0, sync_chunk_devices=1)  # fmt: skip
"""priming in rounds, then the worker syncing one device per batch boundary"""


def _to_version_2(worker, registry, fleet, bus) -> None:
    """The fleet replayed while version 2 becomes champion; the worker swaps and reads on."""
    producer = _busy(worker, fleet, bus)
    registry.promote(NAME, 2)
    _wait_for_swaps(worker, 1)
    producer.join()
    worker.run(timeout=0.2)


def _check(got, fleet, offline_by_version):
    expected = {(s.device, q) for s in fleet.streams for q in s.sequence().tolist()}
    assert set(got) == expected  # every sample exactly once (duplicates fail in _per_sample)
    for (device, seq), (version, probs) in got.items():
        want = offline_by_version[version][device][seq]
        np.testing.assert_allclose(probs, want, atol=2e-5, err_msg=f"{version} {device} {seq}")


@pytest.mark.parametrize("sync_chunk", [256, 1], ids=["sync-at-once", "sync-one-per-batch"])
def test_swap_under_load_primes_states_as_if_the_new_model_saw_everything(
    registry, fleet, sync_chunk
):
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    config = SwapConfig(poll_s=0.02, catch_up_samples=1, max_rounds=3,  # several rounds
                        sync_budget_ms=0.0, sync_chunk_devices=sync_chunk)  # fmt: skip
    worker = _worker(registry, bus, out, config)
    producer = _busy(worker, fleet, bus)
    registry.promote(NAME, 2)
    _wait_for_swaps(worker, 1)
    _wait_for_samples(worker, worker.stats.samples + 250)  # v2 serves a while
    registry.rollback(NAME)  # back to v1, the same way
    _wait_for_swaps(worker, 2)
    producer.join()
    worker.run(timeout=0.2)
    worker.close()
    swap_to_2, back_to_1 = worker.stats.swaps
    assert (swap_to_2.previous, swap_to_2.version) == ("har@v0001", "har@v0002")
    assert back_to_1.version == "har@v0001" and swap_to_2.rounds >= 2
    for swap in (swap_to_2, back_to_1):  # the worker synced sync_chunk devices per boundary
        chunks = -(-swap.synced_by_worker // sync_chunk)  # none if the watcher got them all
        assert swap.sync_batches == max(chunks - 1, 0)
        assert len(swap.pauses_ms) > swap.sync_batches
    messages = _predictions(out)
    got = _per_sample(messages)
    assert {v for v, _ in got.values()} == {"har@v0001", "har@v0002"}
    offline = {f"har@v000{v}": _offline(registry, v, fleet) for v in (1, 2)}
    _check(got, fleet, offline)
    batches: dict[int, set[str]] = {}
    for m in messages:
        batches.setdefault(m["batch"], set()).add(m["model"])
    assert all(len(v) == 1 for v in batches.values())  # the version changes between batches
    assert {b for b, v in batches.items() if "har@v0002" in v} == set(
        range(swap_to_2.batch, back_to_1.batch)
    ) & set(batches)


def test_decoded_labels_are_primed_with_the_states(tmp_path, fleet):
    """With HMM decoding on, a new model's beliefs are primed over the same samples as its
    hidden states (rounds, the worker's sync and its follow-up alike): its labels after the
    swap are those of decoding it from each stream's start."""
    registry, k = Registry(tmp_path / "registry"), len(fleet.activities)
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    grammars = {}
    for version in (1, 2):
        rng = np.random.default_rng(version)
        sticky = rng.random((k, k)) + k * np.eye(k)
        grammar = Grammar(tuple(map(tuple, (sticky / sticky.sum(1, keepdims=True)).tolist())),
                          (1.0 / k,) * k, 0.5 * version, enabled=True)  # fmt: skip
        meta = ModelMeta(spec, fleet.channels, fleet.activities, 50.0, (0.0,) * 6, (0.5,) * 6,
                         64, 1, grammar=grammar)  # fmt: skip
        keras.utils.set_random_seed(version)
        registry.register(NAME, save_model(build_model(spec, meta), meta, tmp_path / "m.keras"))
        grammars[f"har@v000{version}"] = grammar
    registry.promote(NAME, 1)
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    worker = _worker(registry, bus, out, ONE_DEVICE_A_BATCH)
    assert worker.stream_model.decoder is not None
    _to_version_2(worker, registry, fleet, bus)
    worker.close()
    got = _per_sample(_predictions(out))
    assert {v for v, _ in got.values()} == set(grammars)
    offline = {}
    for version, grammar in grammars.items():
        model, _ = registry.load(NAME, int(version[-1]))
        probs = as_served(predict_streams(model, [s.values for s in fleet.streams]), grammar)
        offline[version] = {s.device: dict(zip(s.sequence().tolist(), p, strict=True))
                            for s, p in zip(fleet.streams, probs, strict=True)}  # fmt: skip
    _check(got, fleet, offline)


def test_reset_policy_starts_the_new_model_from_zero_states(registry, fleet):
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    worker = _worker(registry, bus, out, SwapConfig(poll_s=0.02, prime="reset"))
    first = fleet.streams[0]
    half = len(first.values) // 2
    config = ReplayConfig(samples_per_record=5)
    replay(dataset_slice(fleet, 0, half, [first.device]), MemorySink(bus), config)
    worker.run(timeout=0.1)
    registry.promote(NAME, 2)
    _wait_for_swaps(worker, 1)
    replay(dataset_slice(fleet, half, None, [first.device]), MemorySink(bus), config)
    worker.run(timeout=0.1)
    worker.close()
    got = _per_sample(_predictions(out))
    model, _ = registry.load(NAME, 2)
    after = predict_streams(model, [first.values[half:]])[0]
    for i, seq in enumerate(first.sequence()[half:].tolist()):
        version, probs = got[first.device, seq]
        assert version == "har@v0002"
        np.testing.assert_allclose(probs, after[i], atol=2e-5)


def test_an_ensemble_champion_is_swapped_in_and_primed_like_one_model(registry, fleet):
    """v1 -> v6 (three members, one runtime) -> v1 mid-stream: every sample predicted once,
    the ensemble's as if it had seen each device's whole stream."""
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    worker = _worker(registry, bus, out)
    half = [dataset_slice(fleet, *cut) for cut in ((0, 50), (50, None))]
    replay(half[0], MemorySink(bus), ReplayConfig(samples_per_record=5))
    worker.run(timeout=0.1)
    registry.promote(NAME, 6)
    _wait_for_swaps(worker, 1)
    assert len(worker.stream_model.runtime.members) == 3
    replay(half[1], MemorySink(bus), ReplayConfig(samples_per_record=5))
    worker.run(timeout=0.1)
    worker.close()
    got = _per_sample(_predictions(out))
    assert {v for v, _ in got.values()} == {"har@v0001", "har@v0006"}
    _check(got, fleet, {f"har@v000{v}": _offline(registry, v, fleet) for v in (1, 6)})


@pytest.mark.parametrize(
    ("version", "why"),
    [(3, "reads ('a', 'b', 'c')"), (4, "reads 100 Hz in g, rad/s; the worker runs at 50 Hz"),
     (5, "reads 50 Hz in m/s2, rad/s; the worker runs at 50 Hz in g, rad/s")],
    ids=["channels", "rate", "units"],
)  # fmt: skip
def test_a_champion_the_worker_cannot_serve_is_refused_and_the_old_one_kept(
    registry, fleet, version, why
):
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    worker = _worker(registry, bus, out)
    replay(fleet, MemorySink(bus), ReplayConfig(samples_per_record=5))
    registry.promote(NAME, version)
    swap = worker._swaps[0]
    deadline = time.monotonic() + 30
    while not swap.errors:
        assert time.monotonic() < deadline
        worker.step()
    worker.run(timeout=0.1)
    worker.close()
    assert why in swap.errors[0] and not worker.stats.swaps
    assert {v for v, _ in _per_sample(_predictions(out)).values()} == {"har@v0001"}


def test_a_worker_without_a_registry_version_cannot_follow_one(registry, fleet, tmp_path):
    model, meta = registry.load(NAME, 1)
    bus = MemoryBus()
    with pytest.raises(SwapError, match="serves no registry version"):
        Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(bus),
               ServingModel.load(model, meta, "file:x.keras"),
               swaps=[HotSwap(registry, NAME)])  # fmt: skip


def test_a_new_detector_champion_is_swapped_into_the_detector_slot(registry, fleet, tmp_path):
    """Two hot swaps, the classifier's and the detector's: promoting a detector version swaps
    only the detector; its anomaly messages name the new version from then on."""
    spec = ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=4)
    meta = ModelMeta(spec, fleet.channels, (), 50.0, (0.0,) * 6, (0.5,) * 6, 16, 8,
                     threshold=1.0, threshold_quantile=0.99)  # fmt: skip
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        _, model = build_seq2seq(spec, meta)
        registry.register("har-anomaly", save_model(model, meta, tmp_path / "d.keras"))
    registry.promote("har-anomaly", 1)
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    model, meta = registry.load(NAME, 1)
    classifier = ServingModel.load(model, meta, f"{NAME}@v0001")
    detector = ServingModel.load(*registry.load("har-anomaly", 1), "har-anomaly@v0001")
    swaps = [HotSwap(registry, name, SwapConfig(poll_s=0.02)) for name in (NAME, "har-anomaly")]
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), classifier,
                    anomaly_model=detector, config=WorkerConfig(max_records=40),
                    swaps=swaps)  # fmt: skip
    first = fleet.streams[0]
    half = len(first.values) // 2
    config = ReplayConfig(samples_per_record=5)
    replay(dataset_slice(fleet, 0, half, [first.device]), MemorySink(bus), config)
    worker.run(timeout=0.1)
    registry.promote("har-anomaly", 2)
    _wait_for_swaps(worker, 1)
    replay(dataset_slice(fleet, half, None, [first.device]), MemorySink(bus), config)
    worker.run(timeout=0.1)
    worker.close()
    assert worker.anomaly_model.version == "har-anomaly@v0002"
    assert worker.stream_model is classifier and [s.version for s in worker.stats.swaps] == [
        "har-anomaly@v0002"
    ]
    scored = [m for m in _predictions(out) if m["kind"] == "anomaly"]
    versions = [m["model"] for m in sorted(scored, key=lambda m: m["seq_last"])]
    assert versions[0] == "har-anomaly@v0001" and versions[-1] == "har-anomaly@v0002"
    assert versions == sorted(versions)  # never back to the old one


def test_a_refiner_is_swapped_in_and_primed_with_the_states(tmp_path, fleet):
    """A champion saved with a refiner (models.refine) brings it along; the refiner's states
    are primed over the same samples as the hidden states: at the streams' end they are those
    of running the new model and its refiner from each stream's start."""
    registry, k, lag = Registry(tmp_path / "registry"), len(fleet.activities), 10
    spec, small = (
        ModelSpec(setup="stream", cell="gru", hidden=8),
        ModelSpec(setup="stream", hidden=5),
    )
    sticky = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    grammar = Grammar(tuple(map(tuple, sticky.tolist())), (1.0 / k,) * k, 0.5, enabled=True)
    meta = ModelMeta(spec, fleet.channels, fleet.activities, 50.0, (0.0,) * 6, (0.5,) * 6, 64, 1,
                     grammar=grammar)  # fmt: skip
    refiner_meta = ModelMeta(small, refiner_channels(fleet.activities), fleet.activities, 50.0,
                             (-2.0,) * 2 * k, (2.0,) * 2 * k, 64, 32,
                             provenance={LAG_KEY: lag})  # fmt: skip
    for version in (1, 2):
        keras.utils.set_random_seed(version)
        refiner = build_model(small, refiner_meta), refiner_meta
        path = save_model(build_model(spec, meta), meta, tmp_path / "m.keras", refiner=refiner)
        registry.register(NAME, path)
    assert load_refiner(save_model(build_model(spec, meta), meta, tmp_path / "n.keras")) is None
    registry.promote(NAME, 1)
    first = registry.get(NAME, 1).model_path
    serving = ServingModel.load(*load_model(first), "har@v0001", refiner=load_refiner(first))
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    swap = HotSwap(registry, NAME, ONE_DEVICE_A_BATCH)
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), serving,
                    config=WorkerConfig(emit="every", max_records=40, delay_ms=lag * 20.0),
                    swaps=[swap])  # fmt: skip
    assert worker.stream_model.refiner is not None
    _to_version_2(worker, registry, fleet, bus)
    second = registry.get(NAME, 2).model_path
    model, _ = load_model(second)
    probs = predict_streams(model, [s.values for s in fleet.streams])
    fresh = RefinerRuntime.from_keras(*load_refiner(second), grammar, len(probs))
    fresh.advance(np.arange(len(probs)), [len(p) for p in probs], np.concatenate(probs))
    refiner = worker.stream_model.refiner
    assert worker.stream_model.version == "har@v0002" and refiner is not None
    for i, stream in enumerate(fleet.streams):
        slot = worker.store.slot(stream.device)
        np.testing.assert_allclose(refiner.get_state(slot), fresh.get_state(i), atol=1e-4,
                                   err_msg=stream.device)  # fmt: skip
    worker.close()
