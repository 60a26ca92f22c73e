"""Seq2seq models: the autoencoder's bottleneck, the forecaster run on its own outputs, saving
with safe_mode, training without labels and anomaly scores that tell faults from clean data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.exceptions import ModelsError, SpecError
from models.io import load_model, save_model
from models.seq2seq import (
    PREVIOUS,
    anomaly_scores,
    build_seq2seq,
    span,
    training_arrays,
)
from models.spec import ModelMeta, ModelSpec
from models.train_config import TrainConfig
from models.training import train_seq2seq_model
from models.zoo import SAMPLES, build_model

CHANNELS = ("ax", "ay", "az")
RECONSTRUCT = ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=8)
FORECAST = ModelSpec(setup="seq2seq", task="forecast", horizon=4, layers=2, hidden=8)
ATTENTION = ModelSpec(setup="seq2seq", task="forecast", horizon=3, attention=True, hidden=8)


def _meta(spec: ModelSpec, window: int = 12) -> ModelMeta:
    return ModelMeta(spec=spec, channels=CHANNELS, classes=(), rate_hz=50.0,
                     mean=(0.5, -1.0, 9.81), std=(2.0, 0.5, 1.5), window=window,
                     stride=window // 2)  # fmt: skip


def _windows(meta: ModelMeta, n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, span(meta), 3)) * meta.std + meta.mean
    return raw.astype(np.float32)


@pytest.mark.parametrize("spec", [RECONSTRUCT, FORECAST, ATTENTION], ids=lambda s: s.name)
def test_saves_and_loads_with_safe_mode_giving_identical_outputs(spec, tmp_path):
    meta = _meta(spec)
    _, model = build_seq2seq(spec, meta)
    windows = _windows(meta)
    before = model.predict(windows[:, : meta.window], verbose=0)
    loaded, loaded_meta = load_model(save_model(model, meta, tmp_path / "m.keras"))
    np.testing.assert_array_equal(loaded.predict(windows[:, : meta.window], verbose=0), before)
    assert loaded_meta == meta
    steps = meta.window if spec.task == "reconstruct" else spec.horizon
    assert before.shape == (len(windows), steps, len(CHANNELS))
    np.testing.assert_array_equal(
        anomaly_scores(loaded, meta, windows), anomaly_scores(model, meta, windows)
    )


@pytest.mark.parametrize("spec", [FORECAST, ATTENTION], ids=lambda s: s.name)
def test_the_forecaster_runs_on_its_own_outputs_with_the_teacher_forced_weights(spec):
    meta = _meta(spec)
    training, inference = build_seq2seq(spec, meta)
    assert {id(w) for w in training.weights} == {id(w) for w in inference.weights}
    window = _windows(meta)[:, : meta.window]
    # step by step through the teacher-forced model, each step fed the previous step's output
    # (the decoder is causal: later, still empty inputs cannot change an earlier step)
    previous = np.zeros((len(window), spec.horizon, len(CHANNELS)), np.float32)
    previous[:, 0] = (window[:, -1] - meta.mean) / meta.std
    for k in range(spec.horizon):
        out = training.predict({SAMPLES: window, PREVIOUS: previous}, verbose=0)
        if k + 1 < spec.horizon:
            previous[:, k + 1] = out[:, k]
    unrolled = inference.predict(window, verbose=0)
    np.testing.assert_allclose(unrolled, out, rtol=1e-5, atol=1e-5)
    # teacher forcing with other previous samples gives other forecasts after the first step
    previous[:, 1:] += 1.0
    other = training.predict({SAMPLES: window, PREVIOUS: previous}, verbose=0)
    np.testing.assert_allclose(other[:, 0], unrolled[:, 0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(other[:, 1:], unrolled[:, 1:], atol=1e-4)


def test_the_autoencoder_decodes_one_fixed_length_vector():
    meta = _meta(RECONSTRUCT)
    _, model = build_seq2seq(RECONSTRUCT, meta)
    repeat = model.get_layer("repeat_code")
    assert tuple(repeat.input.shape) == (None, RECONSTRUCT.hidden)
    assert tuple(model.get_layer("decoder_0").input.shape) == (None, meta.window, 8)
    # the output is a function of that vector alone: decoding it again gives the same output
    windows = _windows(meta)[:, : meta.window]
    code = keras.Model(model.inputs, repeat.input).predict(windows, verbose=0)
    decoded = code
    for name in ("repeat_code", "decoder_0", "reconstruction"):
        decoded = model.get_layer(name)(decoded)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(decoded), model.predict(windows, verbose=0), atol=1e-5
    )


def _sines(users: int = 6, seconds: int = 40, rate: float = 25.0, seed: int = 0):
    """Recordings of one periodic motion on three channels with a little noise, one per user
    (each at its own cadence and start)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    recs = []
    for _ in range(users):
        phase = 2 * np.pi * (rng.uniform(0.9, 1.1) * t + rng.uniform())
        values = np.stack([np.sin(phase), np.cos(phase), np.sin(2 * phase)], axis=1)
        values = values * (0.5, 1.0, 0.3) + (0.0, 0.2, 1.0) + rng.normal(0, 0.02, values.shape)
        recs.append((values.astype(np.float32), np.full(len(t), -1, np.int16)))
    return recs, list(range(1, users + 1))


def test_a_trained_autoencoder_scores_faults_above_clean_windows():
    recs, users = _sines()
    config = TrainConfig(epochs=5, batch_size=32, learning_rate=0.01, validation_users=0.34,
                         seed=1)  # fmt: skip
    result = train_seq2seq_model(RECONSTRUCT, recs, users, channels=CHANNELS, rate_hz=25.0,
                                 window=24, stride=6, config=config)  # fmt: skip
    meta = result.meta
    assert meta.classes == () and meta.threshold_quantile == 0.99 and meta.threshold > 0
    assert len(result.validation_users) == 2 and "val_loss" in result.history
    held_out = recs[result.validation_users[0] - 1][0]
    clean = np.stack([held_out[s : s + 24] for s in range(0, 960, 24)])
    spiked, stuck = clean.copy(), clean.copy()
    spiked[:, 12, 1] += 6.0  # one sample, about 8 standard deviations
    stuck[:, 8:, 0] = 1.0  # a channel stuck above its range from step 8 on
    scores = {k: anomaly_scores(result.model, meta, w) for k, w in
              (("clean", clean), ("spiked", spiked), ("stuck", stuck))}  # fmt: skip
    assert scores["clean"].mean() < 0.6  # it learnt the motion (the mean alone scores 1)
    assert scores["spiked"].min() > scores["clean"].max()
    assert scores["stuck"].min() > scores["clean"].max()
    assert np.mean(scores["clean"] > meta.threshold) < 0.25  # a held-out user: a few above
    assert np.all(scores["spiked"] > meta.threshold) and np.all(scores["stuck"] > meta.threshold)


def test_train_a_forecaster_within_its_time_budget(caplog):
    recs, users = _sines(users=4, seconds=20)
    config = TrainConfig(epochs=5, batch_size=64, max_seconds=1e-6, clipnorm=0.5)
    with caplog.at_level("WARNING", logger="models.training"):
        result = train_seq2seq_model(ATTENTION, recs, users, channels=CHANNELS, rate_hz=25.0,
                                     window=16, stride=8, config=config)  # fmt: skip
    assert len(result.history["loss"]) == 1  # stopped after the first epoch, and said so
    assert "ran out after epoch 1 of 5" in caplog.text
    assert result.model.input_shape == (None, 16, 3)
    assert result.model.output_shape == (None, ATTENTION.horizon, 3)
    assert result.meta.window == 16 and result.meta.threshold is not None
    inputs, targets = training_arrays(result.meta, _windows(result.meta))
    assert inputs[PREVIOUS].shape == targets.shape == (5, ATTENTION.horizon, 3)


def test_seq2seq_training_refuses_what_it_cannot_use():
    recs, users = _sines(users=2, seconds=2)
    with pytest.raises(SpecError, match="rotate_deg"):
        train_seq2seq_model(RECONSTRUCT, recs, users, channels=CHANNELS, rate_hz=25.0,
                            window=8, stride=8, config=TrainConfig(rotate_deg=30))  # fmt: skip
    with pytest.raises(ModelsError, match="no training recording"):
        train_seq2seq_model(RECONSTRUCT, recs, users, channels=CHANNELS, rate_hz=25.0,
                            window=100, stride=8)  # fmt: skip
    with pytest.raises(SpecError, match="seq2seq"):
        train_seq2seq_model(ModelSpec(), recs, users, channels=CHANNELS, rate_hz=25.0,
                            window=8, stride=8)  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"setup": "seq2seq"}, "task must be one of"),
        ({"setup": "seq2seq", "task": "forecast"}, "horizon >= 1"),
        ({"setup": "seq2seq", "task": "reconstruct", "attention": True}, "forecasters"),
        ({"setup": "seq2seq", "task": "reconstruct", "horizon": 5}, "forecasters"),
        ({"setup": "seq2seq", "task": "reconstruct", "dropout": 0.2}, "no dropout"),
        ({"setup": "seq2seq", "task": "reconstruct", "architecture": "birnn"}, "recurrent"),
        ({"task": "forecast", "horizon": 5}, "seq2seq options"),
        ({"setup": "stream", "attention": True}, "seq2seq options"),
        ({"setup": "transformer"}, "setup must be one of"),
    ],
)
def test_invalid_seq2seq_specs_are_refused_with_a_reason(bad, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec(**bad)


def test_names_and_metadata():
    assert ModelSpec().name == "window-lstm-1x64"  # existing names unchanged
    assert ATTENTION.name == "seq2seq-forecast-attention-lstm-1x8"
    assert RECONSTRUCT.name == "seq2seq-reconstruct-gru-1x8"
    meta = _meta(RECONSTRUCT)
    with pytest.raises(SpecError, match="no classes"):
        ModelMeta(**{**meta.__dict__, "classes": ("SIT",)})
    with pytest.raises(SpecError, match="at least one class"):
        ModelMeta(**{**meta.__dict__, "spec": ModelSpec()})
    with pytest.raises(SpecError, match="together"):
        ModelMeta(**{**meta.__dict__, "threshold": 1.0})
    assert ModelMeta.from_json(meta.to_json()) == meta
    with pytest.raises(SpecError, match="models.seq2seq"):
        build_model(RECONSTRUCT, meta)
    with pytest.raises(ModelsError, match="expected windows"):
        anomaly_scores(build_seq2seq(RECONSTRUCT, meta)[1], meta, np.zeros((2, 5, 3)))
