"""The trainer retrains a seq2seq anomaly detector beside the classifier (``anomaly_name``): the
candidate is registered under the detector's name, promoted and announced when its mean
held-out error is lower, rejected when it is not; a detector that does not fit the classifier
or the buffer is refused before any work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.io import save_model
from models.registry import Registry
from models.seq2seq import build_seq2seq
from models.spec import ModelMeta, ModelSpec
from models.train_config import TrainConfig
from models.training import train_seq2seq_model
from models.windowing import fit_normalisation
from pipeline import demo_models
from pipeline.exceptions import ConfigError
from pipeline.observability.metrics import TrainerMetrics
from pipeline.swap.control import Announcement
from pipeline.trainer.buffer import BufferConfig, Windows
from pipeline.trainer.gate import GateConfig
from pipeline.trainer.labelling import JoinConfig
from pipeline.trainer.service import TRAINING, Trainer, TrainerConfig, train_detector
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay

NAME, DETECTOR = "har", "har-anomaly"
WINDOW = 64
SPEC = ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=6)


@pytest.fixture(scope="module")
def fleet():
    return simulate(SyntheticConfig(devices=12, duration_s=40, gap_prob=0.0, seed=31))


@pytest.fixture
def registry(tmp_path):
    registry = Registry(tmp_path / "registry")
    registry.register(NAME, demo_models.STREAM_FILE, training_data="demo fleet")
    registry.promote(NAME, 1)
    return registry


def _untrained(fleet, window: int = 24, **changes) -> tuple[object, ModelMeta]:
    """A detector of ``SPEC`` with random weights, normalised to ``fleet``."""
    mean, std = fit_normalisation(np.concatenate([s.values for s in fleet.streams]))
    meta = ModelMeta(spec=SPEC, channels=fleet.channels, classes=(), rate_hz=fleet.rate_hz,
                     mean=mean, std=std, window=window, stride=window // 2)  # fmt: skip
    meta = replace(meta, **changes)
    return build_seq2seq(meta.spec, meta)[1], meta


def _trained(fleet) -> tuple[object, ModelMeta]:
    recordings = [(s.values, s.labels) for s in fleet.streams]
    config = TrainConfig(epochs=4, batch_size=64, learning_rate=1e-2, validation_users=0.0)
    result = train_seq2seq_model(SPEC, recordings, list(range(len(recordings))),
                                 channels=fleet.channels, rate_hz=fleet.rate_hz, window=24,
                                 stride=12, config=config)  # fmt: skip
    return result.model, result.meta


def _register_detector(registry, tmp_path, model, meta) -> None:
    path = save_model(model, meta, tmp_path / "detector.keras")
    registry.register(DETECTOR, path, training_data="test fleet")
    registry.promote(DETECTOR, 1)


def _config(tmp_path, **kw) -> TrainerConfig:
    base = TrainerConfig(
        name=NAME, anomaly_name=DETECTOR, labels_topic=None, every_windows=None, interval_s=None,
        drift=False, min_windows=50,
        train=replace(TRAINING, epochs=3, learning_rate=1e-2, tune="all", tbptt_steps=32,
                      lanes=8, max_seconds=60.0),
        state_dir=str(tmp_path / "state"), buffer=BufferConfig(window=WINDOW, holdout_percent=25),
        join=JoinConfig(window=WINDOW, stride=WINDOW), gate=GateConfig(min_holdout_windows=10),
    )  # fmt: skip
    return replace(base, **kw)


def _trainer(registry, bus, control_bus, config, metrics=None):
    source = MemorySource(bus, ["sensor.raw"])
    return Trainer(source, registry, config, control=MemorySink(control_bus), metrics=metrics)


def _announced(control_bus) -> list[Announcement]:
    messages = MemorySource(control_bus, ["har.control"]).poll(100, 0)
    return [Announcement.decode(m.value) for m in messages]


def test_a_trigger_retrains_the_detector_and_a_lower_error_is_promoted_and_announced(
    tmp_path, registry, fleet
):
    champion, champion_meta = _untrained(fleet)  # random weights: any training beats it
    _register_detector(registry, tmp_path, champion, champion_meta)
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    metrics = TrainerMetrics(process=False)
    trainer = _trainer(registry, bus, control, _config(tmp_path, every_windows=200), metrics)
    replay(fleet, MemorySink(bus), ReplayConfig(samples_per_record=25))
    stats = trainer.run(timeout=0.5)
    assert stats.retrains, "no retrain was triggered"
    value = metrics.registry.get_sample_value
    promoted = value("harstream_trainer_detector_retrains_total", {"outcome": "promoted"})
    assert promoted == stats.detector_promotions >= 1
    assert value("harstream_trainer_detector_error", {"model": "candidate"}) == pytest.approx(
        stats.retrains[-1].detector.verdict.candidate_error
    )
    first = stats.retrains[0]
    detector = first.detector
    assert detector is not None and detector.name == DETECTOR and first.kind == "windows"
    verdict = detector.verdict
    assert verdict.promote and verdict.code == "better", verdict
    assert verdict.candidate_error < verdict.champion_error and verdict.scored_windows > 0
    assert stats.detector_promotions >= 1
    record = registry.get(DETECTOR, "champion")
    assert record.version == detector.version == 2 and record.lineage["parent"] == 1
    gate = record.metrics["gate"]
    assert gate["candidate_error"] == verdict.candidate_error and gate["promote"]
    assert record.metrics["trigger"] == first.trigger
    assert record.metrics["train_windows"] == detector.train_windows > 0
    np.testing.assert_allclose(record.meta.mean, champion_meta.mean, rtol=1e-6)  # fine-tuned
    assert record.meta.threshold is not None and record.meta.units == champion_meta.units
    assert (DETECTOR, 2) in {(a.name, a.version) for a in _announced(control)}
    assert trainer.detector_version == 2 and trainer.detector_meta == record.meta


def test_a_detector_candidate_with_a_higher_error_is_rejected(tmp_path, registry, fleet):
    _register_detector(registry, tmp_path, *_trained(fleet))
    bus, control = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 1000)
    barely = replace(TRAINING, epochs=1, learning_rate=1e-6, tune="all", tbptt_steps=32, lanes=8,
                     max_seconds=60.0)  # fmt: skip
    config = _config(tmp_path, mode="scratch", train=barely)  # a fresh model that hardly learns
    trainer = _trainer(registry, bus, control, config)
    replay(fleet, MemorySink(bus), ReplayConfig(samples_per_record=25))
    trainer.run(timeout=0.5)
    result = trainer.retrain().detector
    assert result is not None and not result.verdict.promote
    assert result.verdict.code == "not_better"
    assert result.verdict.candidate_error > result.verdict.champion_error
    rejected = registry.get(DETECTOR, result.version)
    assert rejected.status == "rejected" and "not lower" in rejected.rejected["reason"]
    assert registry.get(DETECTOR, "champion").version == 1 and trainer.detector_version == 1
    assert DETECTOR not in {a.name for a in _announced(control)}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": ("acc_x", "acc_y", "acc_z"), "mean": (0.0,) * 3, "std": (1.0,) * 3},
         "channels"),
        ({"rate_hz": 25.0}, "rate_hz"),
        ({"units": {"acceleration": "m/s2", "angular_rate": "rad/s"}}, "units"),
        ({"window": 80}, "80-sample windows"),
    ],
    ids=["channels", "rate", "units", "window"],
)  # fmt: skip
def test_a_detector_that_does_not_fit_the_classifier_or_the_buffer_is_refused(
    tmp_path, registry, fleet, changes, message
):
    _register_detector(registry, tmp_path, *_untrained(fleet, **changes))
    with pytest.raises(ConfigError, match=message):
        _trainer(registry, MemoryBus(), MemoryBus(), _config(tmp_path))


def test_the_detector_needs_a_seq2seq_champion(tmp_path, registry):
    with pytest.raises(ConfigError, match="has no champion"):
        _trainer(registry, MemoryBus(), MemoryBus(), _config(tmp_path))
    registry.register(DETECTOR, demo_models.STREAM_FILE)
    registry.promote(DETECTOR, 1)
    with pytest.raises(ConfigError, match="not a seq2seq model"):
        _trainer(registry, MemoryBus(), MemoryBus(), _config(tmp_path))
    with pytest.raises(ConfigError, match="another model"):
        _config(tmp_path, anomaly_name=NAME)


@pytest.mark.parametrize("mode", ["finetune", "scratch"])
def test_a_detector_candidate_reads_what_its_champion_reads(tmp_path, fleet, mode):
    si = {"acceleration": "m/s2", "angular_rate": "deg/s"}
    champion, meta = _untrained(fleet, window=16, units=si)
    cut = [(s, i) for s in fleet.streams[:4] for i in range(0, 6 * WINDOW, WINDOW)]
    train = Windows(tuple(s.device for s, _ in cut),
                    np.stack([s.values[i : i + WINDOW] for s, i in cut]),
                    np.stack([s.labels[i : i + WINDOW] for s, i in cut]))  # fmt: skip
    config = _config(tmp_path, mode=mode, train=replace(TRAINING, epochs=1, max_seconds=60.0))
    _, trained = train_detector(champion, meta, train, config)
    assert (trained.spec, trained.channels, trained.rate_hz) == (meta.spec, meta.channels,
                                                                 meta.rate_hz)  # fmt: skip
    assert (trained.window, trained.stride, trained.units) == (16, 8, si)
    assert trained.provenance["mode"] == mode and trained.threshold is not None
    kept = np.allclose(trained.mean, meta.mean, rtol=1e-6)
    assert kept == (mode == "finetune")
