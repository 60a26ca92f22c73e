"""Fine-tuning a seq2seq model (``train_seq2seq_model(start=...)``): the champion's normalisation
is kept, training starts from its weights (``tune="head"``: only the output layer moves), the
anomaly threshold is recomputed on the new windows; a starting model of another spec is refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import ModelsError
from models.seq2seq import anomaly_scores, span, threshold_of
from models.spec import ModelSpec
from models.train_config import TrainConfig
from models.training import SEQ2SEQ_HEAD, train_seq2seq_model
from models.windowing import windows_from_recordings

CHANNELS = ("ax", "ay", "az")
RECONSTRUCT = ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=6)
FORECAST = ModelSpec(setup="seq2seq", task="forecast", horizon=2, hidden=6)
QUICK = TrainConfig(epochs=1, batch_size=32, validation_users=0.0, lr_schedule="constant")


def _recordings(users: int, offset: float, seed: int):
    """One periodic motion on three channels per user, shifted by ``offset``."""
    rng = np.random.default_rng(seed)
    t = np.arange(400) / 25.0
    recs = []
    for _ in range(users):
        phase = 2 * np.pi * (rng.uniform(0.9, 1.1) * t + rng.uniform())
        values = np.stack([np.sin(phase), np.cos(phase), np.sin(2 * phase)], axis=1) + offset
        recs.append((values.astype(np.float32), np.full(len(t), -1, np.int16)))
    return recs, list(range(users))


def _train(spec, recs, users, config=QUICK, start=None):
    return train_seq2seq_model(spec, recs, users, channels=CHANNELS, rate_hz=25.0, window=16,
                               stride=8, config=config, start=start)  # fmt: skip


@pytest.mark.parametrize("spec", [RECONSTRUCT, FORECAST], ids=lambda s: s.task)
def test_fine_tuning_keeps_the_normalisation_and_starts_from_the_champions_weights(spec):
    champion = _train(spec, *_recordings(3, offset=0.0, seed=1))
    recs, users = _recordings(3, offset=2.0, seed=2)  # fitted anew, the mean would move by 2
    head = _train(spec, recs, users, config=TrainConfig(**{**QUICK.__dict__, "tune": "head"}),
                  start=champion.model)  # fmt: skip
    np.testing.assert_allclose(head.meta.mean, champion.meta.mean, rtol=1e-6)  # float32 kept
    np.testing.assert_allclose(head.meta.std, champion.meta.std, rtol=1e-6)
    moved = {
        w.path.split("/")[0]
        for w, before in zip(head.model.weights, champion.model.get_weights(), strict=True)
        if not np.array_equal(w.numpy(), before)
    }
    assert moved and moved <= set(SEQ2SEQ_HEAD)  # only the output layer left the champion's
    assert all(layer.trainable for layer in head.model.layers)  # saved unfrozen
    X, _, _ = windows_from_recordings(recs, span(head.meta), 8)
    assert head.meta.threshold == threshold_of(anomaly_scores(head.model, head.meta, X))
    assert head.meta.threshold != champion.meta.threshold
    scratch = _train(spec, recs, users)
    assert np.allclose(np.subtract(scratch.meta.mean, champion.meta.mean), 2.0, atol=0.1)


def test_every_layer_fine_tunes_from_the_champions_weights():
    champion = _train(RECONSTRUCT, *_recordings(3, offset=0.0, seed=1))
    recs, users = _recordings(2, offset=0.0, seed=3)
    tiny_steps = TrainConfig(**{**QUICK.__dict__, "learning_rate": 1e-7})
    tuned = _train(RECONSTRUCT, recs, users, config=tiny_steps, start=champion.model)
    scratch = _train(RECONSTRUCT, recs, users, config=tiny_steps)
    champion_weights = champion.model.get_weights()
    for tuned_w, champion_w in zip(tuned.model.get_weights(), champion_weights, strict=True):
        np.testing.assert_allclose(tuned_w, champion_w, atol=1e-4)
    scratch_weights = scratch.model.get_weights()
    assert any(
        not np.allclose(c, s, atol=1e-3)
        for c, s in zip(champion_weights, scratch_weights, strict=True)
    )


def test_a_starting_model_of_another_spec_is_refused():
    recs, users = _recordings(2, offset=0.0, seed=4)
    other = _train(ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=4), recs,
                   users)  # fmt: skip
    with pytest.raises(ModelsError, match="cannot fine-tune"):
        _train(RECONSTRUCT, recs, users, start=other.model)
