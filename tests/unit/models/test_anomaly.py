"""Anomaly detectors beside the recurrent seq2seq models: the next-sample head's error over a
window, the per-window z-score, and the memory-less MLP autoencoder (a seq2seq spec)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.anomaly import next_step_scores, zscore_scores
from models.exceptions import ModelsError, SpecError
from models.io import load_model, save_model
from models.seq2seq import anomaly_scores, build_seq2seq, normalised
from models.spec import ModelMeta, ModelSpec
from models.train_config import TrainConfig
from models.training import train_seq2seq_model
from models.zoo import NEXT, build_model

MLP_AE = ModelSpec(setup="seq2seq", task="reconstruct", architecture="mlp", layers=2, hidden=8)


def test_next_step_scores_average_the_heads_error_on_each_following_sample(make_meta, raw_batch):
    spec = ModelSpec(setup="stream", hidden=8, next_step=True)
    meta = make_meta(spec)
    keras.utils.set_random_seed(0)
    model = build_model(spec, meta)
    scores = next_step_scores(model, meta, raw_batch)
    predicted = model.predict(raw_batch, verbose=0)[NEXT]  # (4, 12, 3): the next sample at t
    target = (raw_batch - np.asarray(meta.mean)) / np.asarray(meta.std)
    by_hand = np.mean((predicted[:, :-1] - target[:, 1:]) ** 2, axis=(1, 2))
    np.testing.assert_allclose(scores, by_hand, rtol=1e-5)
    assert scores.shape == (4,) and next_step_scores(model, meta, raw_batch[:0]).shape == (0,)
    with pytest.raises(SpecError, match="next-sample head"):
        next_step_scores(model, make_meta(ModelSpec(setup="stream")), raw_batch)
    with pytest.raises(ModelsError, match="expected windows"):
        next_step_scores(model, meta, raw_batch[:, :, :2])


def test_zscore_is_the_largest_deviation_in_training_stds():
    windows = np.zeros((3, 5, 2), np.float32)
    windows[1, 2, 1] = -6.0
    windows[2, 4, 0] = 3.0
    np.testing.assert_allclose(zscore_scores(windows, (0.0, 0.0), (1.0, 2.0)), [0.0, 3.0, 3.0])


def test_mlp_autoencoder_is_a_memoryless_seq2seq_reconstructor(tmp_path):
    assert MLP_AE.name == "seq2seq-reconstruct-mlp-2x8"
    with pytest.raises(SpecError, match="recurrent"):
        ModelSpec(setup="seq2seq", task="forecast", horizon=3, architecture="mlp")
    rng = np.random.default_rng(0)
    t = np.arange(400)[:, None]
    recs = [(np.sin(0.2 * t + u + np.arange(3)) + 0.05 * rng.standard_normal((400, 3)),
             np.zeros(400, np.int64)) for u in range(4)]  # fmt: skip
    result = train_seq2seq_model(MLP_AE, recs, [1, 2, 3, 4], channels=("ax", "ay", "az"),
                                 rate_hz=50.0, window=16, stride=4,
                                 config=TrainConfig(epochs=3, batch_size=32))  # fmt: skip
    model, meta = result.model, result.meta
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [8, 8, 8, 16 * 3]  # down to a code of 8, back, the window
    assert not any(isinstance(layer, keras.layers.RNN) for layer in model.layers)
    windows = np.stack([recs[0][0][i : i + 16] for i in range(0, 200, 20)]).astype(np.float32)
    scores = anomaly_scores(model, meta, windows)
    by_hand = np.mean((model.predict(windows, verbose=0) - normalised(meta, windows)) ** 2, (1, 2))
    np.testing.assert_allclose(scores, by_hand, rtol=1e-5)
    loaded, loaded_meta = load_model(save_model(model, meta, tmp_path / "mlp.keras"))
    np.testing.assert_allclose(anomaly_scores(loaded, loaded_meta, windows), scores, rtol=1e-6)
    assert isinstance(loaded_meta, ModelMeta) and loaded_meta.threshold is not None
    assert build_seq2seq(MLP_AE, meta)[0] is not None
