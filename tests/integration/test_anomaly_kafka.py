"""``harstream run --anomaly-model`` on the real broker: a seq2seq forecaster, trained here on
clean periodic motion, scores every device's windows beside the activity model; a device whose
sensor freezes and spikes is flagged there, the clean devices never are."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from corpus import start_harstream, stream_model_file, worker_toml
from models.io import save_model
from models.spec import ModelSpec
from models.train_config import TrainConfig
from models.training import train_seq2seq_model
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import DeviceStream, StreamDataset
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = pytest.mark.kafka
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
DETECTOR = ModelSpec(setup="seq2seq", task="forecast", horizon=8, cell="gru", hidden=16)
WINDOW, STRIDE = 24, 8
"""the forecaster reads 24 samples and predicts 8; a window every 8 samples: every sample is
in some window's forecast"""
FREEZE, SPIKE = (300, 400), (700, 703)
"""where the faulty device's sensor freezes (all channels hold their value) and spikes"""


def _motion(rng: np.random.Generator, seconds: float, noise: float) -> np.ndarray:
    """Periodic motion about 2 Hz (a gait), gravity on z, sensor noise of ``noise``."""
    t = np.arange(int(seconds * 50)) / 50.0
    amplitude = rng.uniform(0.2, 0.6, len(CHANNELS))
    phase = rng.uniform(0, 2 * np.pi) + np.array([0.0, 0.5, 1.0, 0.0, 0.5, 1.0])
    values = amplitude * np.sin(2 * np.pi * rng.uniform(1.6, 2.2) * t[:, None] + phase)
    values[:, 2] += 1.0
    return (values + rng.normal(0.0, noise, values.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    """The forecaster, trained on 24 devices with noise from 0.05 to 0.2, saved."""
    rng = np.random.default_rng(7)
    recordings = [(_motion(rng, 60, rng.uniform(0.05, 0.2)), np.zeros(3000, np.int16))
                  for _ in range(24)]  # fmt: skip
    result = train_seq2seq_model(
        DETECTOR, recordings, list(range(24)), channels=CHANNELS, rate_hz=50.0, window=WINDOW,
        stride=STRIDE, config=TrainConfig(epochs=10, learning_rate=3e-3, seed=1, max_seconds=180),
    )  # fmt: skip
    return save_model(result.model, result.meta, tmp_path_factory.mktemp("det") / "d.keras")


def _fleet() -> tuple[StreamDataset, str]:
    """Five clean devices (noise 0.05) and one whose sensor freezes, then spikes."""
    rng = np.random.default_rng(99)
    streams = []
    for i in range(6):
        values = _motion(rng, 20, 0.05)
        if i == 5:
            values[slice(*FREEZE)] = values[FREEZE[0] - 1]
            values[slice(*SPIKE), 1] += 10 * values[:, 1].std()
        streams.append(DeviceStream(f"dev-{i}", values, np.full(len(values), -1, np.int16), 50.0))
    return StreamDataset("motion", CHANNELS, ("WALK", "SIT"), 50.0, tuple(streams)), "dev-5"


def test_run_scores_windows_and_flags_the_faulty_device(
    kafka_bootstrap, unique_topic, tmp_path, detector_file
):
    from models.io import load_model  # the detector's metadata: its threshold

    meta = load_model(detector_file)[1]
    kafka = KafkaConfig(kafka_bootstrap)
    raw, preds = unique_topic("raw"), unique_topic("preds")
    ensure_topics(kafka, [TopicSpec(raw, 3), TopicSpec(preds, 3)])
    data, faulty = _fleet()
    classifier = stream_model_file(data, tmp_path / "m.keras")
    config = tmp_path / "worker.toml"
    config.write_text(worker_toml(kafka_bootstrap, unique_topic, input_topic=raw,
                                  predictions_topic=preds))  # fmt: skip
    worker = start_harstream(tmp_path / "worker.log", "run", "--config", str(config),
                             "--stream-model", str(classifier), "--anomaly-model",
                             str(detector_file), "--every-k", "50", "--http-port", "0")  # fmt: skip
    expected = sum(len(range(meta.span - 1, s.n, STRIDE)) for s in data.streams)
    try:
        sink = clients.sink(kafka)
        replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10))
        sink.close()
        reader = clients.source(kafka, [preds], SourceConfig(group_id=unique_topic("r")))
        got, deadline = [], time.monotonic() + 120
        while sum(m["kind"] == "anomaly" for m in got) < expected and time.monotonic() < deadline:
            got += [json.loads(m.value) for m in reader.poll(1000, 0.5)]
        reader.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode == 0, log[-2000:]
    windows = [m for m in got if m["kind"] == "anomaly"]
    assert len(windows) == expected, log[-2000:]
    assert {m["model"] for m in windows} == {f"file:{detector_file}"}
    assert {m["threshold"] for m in windows} == {round(meta.threshold, 6)}
    assert all(m["seq_last"] - m["seq_first"] == meta.span - 1 for m in windows)

    clean = [m for m in windows if m["device"] != faulty]
    assert not any(m["anomalous"] for m in clean), max(m["score"] for m in clean)

    def overlapping(span):
        return [m for m in windows if m["device"] == faulty
                and m["seq_first"] < span[1] and m["seq_last"] >= span[0]]  # fmt: skip

    spiked, frozen = overlapping(SPIKE), overlapping(FREEZE)
    scores = (meta.threshold, [m["score"] for m in spiked], [m["score"] for m in frozen])
    assert any(m["anomalous"] for m in spiked) and any(m["anomalous"] for m in frozen), scores
    calm = [m for m in windows if m["device"] == faulty and m not in spiked + frozen]
    assert not any(m["anomalous"] for m in calm)
