"""The trainer on the in-memory bus with the demo's real stream model as champion: fleets that
carry their phones at new angles make it drift; retraining on their labels is promoted and
announced; a candidate trained on shuffled labels is rejected; the buffer survives a restart;
an ensemble champion is fine-tuned member by member."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from models.hmm import Grammar
from models.io import load_model, save_model
from models.registry import Registry
from models.zoo import MEMBER, assemble
from pipeline import demo_models
from pipeline.exceptions import ConfigError
from pipeline.observability.metrics import TrainerMetrics
from pipeline.serving import ServingModel
from pipeline.swap.control import Announcement
from pipeline.trainer.buffer import BufferConfig, Windows, stitched
from pipeline.trainer.gate import GateConfig
from pipeline.trainer.labelling import JoinConfig
from pipeline.trainer.service import TRAINING, Trainer, TrainerConfig, train_candidate
from streams.datasets import SyntheticConfig, simulate
from streams.datasets.base import StreamDataset
from streams.datasets.resample import at_rate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay
from streams.units import Units

NAME = "har"
WINDOW = 128


@pytest.fixture(scope="module")
def tilted():
    """Devices wearing the phone up to 60 degrees off (the champion learnt 10): drift."""
    return simulate(SyntheticConfig(devices=30, duration_s=60, orientation_jitter_deg=60,
                                    gap_prob=0.0, seed=21))  # fmt: skip


@pytest.fixture
def registry(tmp_path):
    registry = Registry(tmp_path / "registry")
    registry.register(NAME, demo_models.STREAM_FILE, training_data="demo fleet")
    registry.promote(NAME, 1)
    return registry


def _config(tmp_path, **kw) -> TrainerConfig:
    base = TrainerConfig(
        name=NAME, labels_topic="sensor.labels", every_windows=None, interval_s=None,
        min_windows=60,
        train=replace(TRAINING, epochs=4, learning_rate=3e-4, tune="all", tbptt_steps=42, lanes=16),
        state_dir=str(tmp_path / "state"), buffer=BufferConfig(window=WINDOW),
        join=JoinConfig(window=WINDOW, stride=WINDOW), gate=GateConfig(margin=0.01),
    )  # fmt: skip
    return replace(base, **kw)


def _trainer(registry, bus, control_bus, config, metrics=None):
    source = MemorySource(bus, ["sensor.raw", "sensor.labels"])
    return Trainer(source, registry, config, control=MemorySink(control_bus), metrics=metrics)


def test_drift_on_a_new_way_of_carrying_triggers_a_retrain_that_is_promoted(
    tmp_path, registry, tilted
):
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    metrics = TrainerMetrics(process=False)
    config = _config(tmp_path, drift=True, min_windows=200)
    trainer = _trainer(registry, bus, control, config, metrics)
    calm = simulate(SyntheticConfig(devices=30, duration_s=60, gap_prob=0.0, seed=22))
    renamed = tuple(replace(s, device=f"calm-{s.device}") for s in calm.streams)
    calm = StreamDataset(calm.name, calm.channels, calm.activities, calm.rate_hz, renamed)
    replay(calm, MemorySink(bus), ReplayConfig(samples_per_record=25))  # as the champion learnt
    assert not trainer.run(timeout=0.3).drift_detections
    replay(tilted, MemorySink(bus), ReplayConfig(samples_per_record=25))  # then, at new angles
    stats = trainer.run(timeout=0.5)
    assert stats.drift_detections >= 1 and stats.retrains, "the champion's error rise went unseen"
    first = stats.retrains[0]
    assert first.trigger == "drift" and first.verdict.promote, first.verdict
    assert first.verdict.candidate_accuracy > first.verdict.champion_accuracy + 0.01
    champion = registry.get(NAME, "champion")
    assert champion.version == first.version and champion.lineage["parent"] == 1
    assert champion.metrics["gate"]["holdout_windows"] == first.verdict.holdout_windows
    messages = MemorySource(control, ["har.control"]).poll(100, 0)
    assert [Announcement.decode(m.value).version for m in messages][0] == first.version
    value = metrics.registry.get_sample_value
    assert value("harstream_trainer_runs_total", {"trigger": "drift"}) >= 1
    assert value("harstream_trainer_promotions_total") == stats.promotions >= 1
    assert value("harstream_trainer_drift_detections_total") == stats.drift_detections
    assert value("harstream_trainer_records_total") == stats.records
    assert value("harstream_trainer_buffered_windows") == len(trainer.buffer)
    last = stats.retrains[-1].verdict
    assert value("harstream_trainer_candidate_accuracy_ratio") == last.candidate_accuracy
    champion_label = f"v{registry.get(NAME, 'champion').version:04d}"
    assert value("harstream_trainer_champion_info", {"version": champion_label}) == 1


def test_a_candidate_trained_on_shuffled_labels_is_rejected(tmp_path, registry, tilted):
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    trainer = _trainer(registry, bus, control, _config(tmp_path, drift=False))
    replay(tilted, MemorySink(bus), ReplayConfig(samples_per_record=25))
    trainer.run(timeout=0.5)
    train = trainer.buffer.windows(holdout=False)
    rng = np.random.default_rng(0)
    shuffled = Windows(train.devices, train.values, train.labels[rng.permutation(len(train))])
    trainer.buffer = _only(trainer.buffer, shuffled, trainer.buffer.windows(holdout=True))
    result = trainer.retrain("shuffled labels")
    assert not result.verdict.promote
    rejected = registry.get(NAME, result.version)
    assert rejected.status == "rejected" and "not better" in rejected.rejected["reason"]
    assert registry.get(NAME, "champion").version == 1
    assert not MemorySource(control, ["har.control"]).poll(100, 0)


def _only(buffer, train: Windows, holdout: Windows):
    fresh = type(buffer)(buffer.channels, buffer.config)
    for part in (train, holdout):
        fresh.add(part.devices, part.values, part.labels)
    return fresh


def test_label_ranges_from_the_labels_topic_make_windows_and_the_buffer_survives_a_restart(
    tmp_path, registry, tilted
):
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    config = _config(tmp_path, drift=False)
    trainer = _trainer(registry, bus, control, config)
    replay(tilted, MemorySink(bus), ReplayConfig(samples_per_record=25, with_labels=False))
    sink = MemorySink(bus)
    for stream in tilted.streams[:5]:
        times = stream.t0_ms + stream.sequence() * 20.0
        edges = np.flatnonzero(np.diff(stream.labels)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, stream.n], strict=True):
            end = times[b] if b < stream.n else times[-1] + 20.0
            message = {"start_ms": float(times[a]), "end_ms": float(end),
                       "activity": tilted.activities[stream.labels[a]]}  # fmt: skip
            sink.send("sensor.labels", stream.device.encode(), json.dumps(message).encode())
    trainer.run(timeout=0.5)
    trainer.close()
    windows = trainer.buffer.windows(False), trainer.buffer.windows(True)
    devices = {d for w in windows for d in w.devices}
    assert devices == {s.device for s in tilted.streams[:5]}  # only the labelled devices
    by_device = {s.device: s for s in tilted.streams}
    for w in windows:
        for device, values, labels in zip(w.devices, w.values, w.labels, strict=True):
            start = np.flatnonzero((by_device[device].values == values[0]).all(axis=1))[0]
            assert (labels == by_device[device].labels[start : start + WINDOW]).all()
    restarted = _trainer(registry, MemoryBus(), control, config)
    assert len(restarted.buffer) == len(trainer.buffer) > 0
    assert trainer.stats.label_ranges > 0


def test_the_trainer_needs_a_champion(tmp_path):
    registry = Registry(tmp_path / "empty")
    shutil.copy(demo_models.STREAM_FILE, tmp_path / "m.keras")
    registry.register(NAME, tmp_path / "m.keras")
    with pytest.raises(ConfigError, match="no champion"):
        _trainer(registry, MemoryBus(), MemoryBus(), _config(tmp_path))


def test_each_devices_windows_are_stitched_in_time_order_so_the_state_carries_across_them():
    stream = np.arange(48, dtype=np.float32).reshape(24, 2)
    labels = np.arange(24, dtype=np.int16) % 3
    # oldest first, devices interleaved; a: 0-7 and 4-11 overlap, 14-21 follows a gap
    order = [("a", 0), ("b", 2), ("a", 4), ("a", 14)]
    train = Windows(tuple(d for d, _ in order), np.stack([stream[s : s + 8] for _, s in order]),
                    np.stack([labels[s : s + 8] for _, s in order]))  # fmt: skip
    recordings, devices = stitched(train, stride=4)
    assert devices == ["a", "b"]
    (a_values, a_labels), (b_values, b_labels) = recordings
    a_rows = np.r_[0:12, 14:22]  # the overlap once, then the window after the gap whole
    assert (a_values == stream[a_rows]).all() and (a_labels == labels[a_rows]).all()
    assert (b_values == stream[2:10]).all() and (b_labels == labels[2:10]).all()
    assert a_labels.dtype == np.int64


def test_tune_head_fine_tunes_only_the_output_layers(tmp_path, registry, tilted):
    champion, meta = registry.load(NAME, 1)
    streams = tilted.streams[:6]
    cut = [(s, start) for s in streams for start in range(0, 8 * WINDOW, WINDOW)]
    train = Windows(tuple(s.device for s, _ in cut),
                    np.stack([s.values[i : i + WINDOW] for s, i in cut]),
                    np.stack([s.labels[i : i + WINDOW] for s, i in cut]))  # fmt: skip
    config = _config(tmp_path)
    config = replace(config, train=replace(config.train, tune="head", epochs=1))
    si = {"acceleration": "m/s2", "angular_rate": "deg/s"}  # what the buffer then holds
    k = len(meta.classes)
    decoded = Grammar(tuple(tuple(1.0 / k for _ in range(k)) for _ in range(k)),
                      (1.0 / k,) * k, 0.25, True, lags=((1000.0, 0.05, 0.8, 0.9),))  # fmt: skip
    model, trained = train_candidate(champion, replace(meta, units=si, grammar=decoded), train,
                                     config)  # fmt: skip
    changed = {w.path.split("/")[0] for w, before in zip(model.weights, champion.get_weights(),
               strict=True) if not np.array_equal(w.numpy(), before)}  # fmt: skip
    assert changed == {"activity", "next"}  # the output layers, not gru_0
    assert trained.units == si  # the champion's units, in which the buffer's windows are
    # its grammar from the buffer's labels; no validation users: the champion's choice carries
    assert trained.grammar.transitions != decoded.transitions
    assert (trained.grammar.enabled, trained.grammar.temperature) == (True, 0.25)
    assert trained.grammar.lags == decoded.lags  # and its smoother's


def test_devices_at_other_rates_and_in_other_units_give_the_model_s_windows(
    tmp_path, registry, tilted
):
    """The same devices sent at 50 Hz in g, and at 100 Hz in m/s², fill the buffer with the
    same number of windows at the champion's rate, alike up to the resampling; 2 Hz is turned
    away."""

    fleet = replace(tilted, streams=tilted.streams[:6])
    si = Units("m/s2")
    scale = si.scale_from(Units(), fleet.channels)
    fast = replace(fleet, units=si, streams=tuple(
        replace(at_rate(s, 100.0), values=at_rate(s, 100.0).values * scale)
        for s in fleet.streams))  # fmt: skip
    slow = replace(fleet, streams=tuple(at_rate(s, 2.0) for s in fleet.streams))
    buffers = []
    for data in (fleet, fast):
        bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
        trainer = _trainer(registry, bus, control, _config(tmp_path / str(len(buffers)),
                                                           drift=False))  # fmt: skip
        replay(data, MemorySink(bus), ReplayConfig(samples_per_record=25))
        if data is fast:
            replay(slow, MemorySink(bus), ReplayConfig(samples_per_record=25))
        trainer.run(timeout=0.5)
        trainer.close()
        buffers.append(trainer)
    at_50, at_100 = (np.concatenate([t.buffer.windows(h).values for h in (False, True)])
                     for t in buffers)  # fmt: skip
    assert len(at_100) >= len(at_50) - 6 > 0  # the filter holds back a few samples a device
    assert abs(float(at_100[..., 2].mean()) - float(at_50[..., 2].mean())) < 0.02  # in g
    assert buffers[1].stats.rejected["rate_unsupported"] == sum(-(-s.n // 25) for s in slow.streams)


def test_an_ensemble_champion_is_fine_tuned_member_by_member_and_registered_as_one(
    tmp_path, tilted
):
    demo, meta = load_model(demo_models.STREAM_FILE)
    second, _ = load_model(demo_models.STREAM_FILE)
    for w in second.trainable_weights:  # a second member that is not the first
        w.assign(w.numpy() * 0.9)
    meta = replace(meta, spec=replace(meta.spec, members=2))
    path = save_model(assemble([demo, second], meta), meta, tmp_path / "ensemble.keras")
    registry = Registry(tmp_path / "registry")
    registry.register(NAME, path, training_data="the demo model twice")
    registry.promote(NAME, 1)
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    trainer = _trainer(registry, bus, control, _config(tmp_path, drift=False))
    replay(tilted, MemorySink(bus), ReplayConfig(samples_per_record=25))
    trainer.run(timeout=0.5)
    result = trainer.retrain("an ensemble champion")
    assert np.isfinite(result.verdict.candidate_accuracy)
    candidate, trained = registry.load(NAME, result.version)
    champion, _ = registry.load(NAME, 1)
    assert trained.spec.members == 2 and trained.spec == meta.spec
    for k in range(2):  # each member fine-tuned from its own weights
        layer = f"{MEMBER}{k}_activity"
        before, after = champion.get_layer(layer).get_weights(), candidate.get_layer(layer)
        assert not np.array_equal(after.get_weights()[0], before[0])
        assert np.abs(after.get_weights()[0] - before[0]).max() < 0.5  # from it, not anew
    served = ServingModel.load(candidate, trained, "har@candidate")
    assert len(served.runtime.members) == 2
