"""Ensembles: K models of one spec trained on their own seeds, held as one Keras model whose
probabilities are their mean, run by the NumPy runtime as one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.exceptions import SpecError
from models.io import load_model, save_model
from models.runtime import StreamRuntime
from models.spec import ModelSpec
from models.training import TrainConfig, predict_streams, train_stream_model, train_window_model
from models.windowing import windows_from_recordings
from models.zoo import assemble, build_model, member_model

CHANNELS, CLASSES = ("a", "b"), ("LOW", "HIGH")
CFG = TrainConfig(epochs=2, tbptt_steps=25, chunks_per_lane=4, lanes=4, learning_rate=0.01,
                  seed=3)  # fmt: skip
KW = dict(channels=CHANNELS, classes=CLASSES, rate_hz=50.0, config=CFG)
SPEC = ModelSpec(setup="stream", cell="gru", hidden=8, next_step=True)


def _recordings(n_rec=8, n=400, seed=0):
    """Two activities told apart by the level of channel 0, switching every 100 samples."""
    rng = np.random.default_rng(seed)
    recs = []
    for r in range(n_rec):
        labels = ((np.arange(n) + 37 * r) // 100 % 2).astype(np.int16)
        values = rng.normal(size=(n, 2)).astype(np.float32) * 0.3
        values[:, 0] += np.where(labels == 1, 1.0, -1.0) + 4.0
        recs.append((values, labels))
    return recs, [r % 4 + 1 for r in range(n_rec)]


@pytest.fixture(scope="module")
def trained():
    recs, users = _recordings()
    ensemble = train_stream_model(replace(SPEC, members=2), recs, users, **KW)
    alone = train_stream_model(SPEC, recs, users, **KW)  # seed 3: member 0
    return recs, users, ensemble, alone


def test_members_train_on_their_own_seeds_and_the_ensemble_averages_them(trained):
    recs, _, ensemble, alone = trained
    meta = ensemble.meta
    assert meta.spec.name == "stream-gru-1x8-ensemble2" and meta.grammar is not None
    assert sorted(set(ensemble.history["member"])) == [0, 1]
    one = replace(meta, spec=SPEC)
    members = [member_model(ensemble.model, one, k) for k in range(2)]
    for a, b in zip(members[0].get_weights(), alone.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # member 0 is the model seed 3 trains alone
    assert not np.allclose(members[0].get_weights()[0], members[1].get_weights()[0])
    values = [v for v, _ in recs[:3]]
    mean = np.mean([predict_streams(m, values) for m in members], axis=0)
    np.testing.assert_allclose(predict_streams(ensemble.model, values), mean, atol=1e-6)


def test_the_runtime_runs_a_saved_ensemble_as_keras_does(trained, tmp_path):
    recs, _, ensemble, _ = trained
    model, meta = load_model(save_model(ensemble.model, ensemble.meta, tmp_path / "e.keras"))
    values = np.stack([v for v, _ in recs[:3]])
    expected = model.predict(values, verbose=0)
    runtime = StreamRuntime.from_keras(model, meta, capacity=4)
    assert len(runtime.members) == 2
    out = runtime.advance([0, 1, 2], [400] * 3, values.reshape(-1, 2))
    np.testing.assert_allclose(out.probs, expected["activity"].reshape(-1, 2), atol=1e-5)
    np.testing.assert_allclose(out.next, expected["next"].reshape(-1, 2), atol=1e-5)


def test_an_ensemble_fine_tunes_member_by_member(trained):
    recs, users, ensemble, _ = trained
    cfg = replace(CFG, epochs=1, learning_rate=1e-4)
    tuned = train_stream_model(ensemble.meta.spec, recs, users, **{**KW, "config": cfg},
                               start=ensemble.model)  # fmt: skip
    assert tuned.meta.spec == ensemble.meta.spec
    np.testing.assert_allclose(tuned.meta.mean, ensemble.meta.mean, rtol=1e-6)  # kept
    before, after = ensemble.model.get_weights(), tuned.model.get_weights()
    assert all(a.shape == b.shape for a, b in zip(before, after, strict=True))
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_assemble_refuses_what_is_no_ensemble(trained, make_meta):
    _, _, ensemble, alone = trained
    with pytest.raises(SpecError, match="2 members, not 1"):
        assemble([alone.model], ensemble.meta)
    other = build_model(SPEC, replace(alone.meta, mean=(0.0, 0.0)))
    with pytest.raises(SpecError, match="normalised alike"):
        assemble([alone.model, other], ensemble.meta)
    with pytest.raises(SpecError, match="members must be >= 1"):
        ModelSpec(setup="seq2seq", members=2)


def test_window_ensembles_train_members_on_their_own_seeds():
    recs, users = _recordings()
    X, y, g = windows_from_recordings(recs, 32, 16, users)
    cfg = TrainConfig(epochs=2, batch_size=32, seed=5, patience=5)
    kw = dict(channels=CHANNELS, classes=CLASSES, rate_hz=50.0, stride=16, config=cfg)
    spec = ModelSpec(cell="lstm", hidden=8)
    ensemble = train_window_model(replace(spec, members=3), X, y, g, **kw)
    alone = train_window_model(spec, X, y, g, **kw)
    one = replace(ensemble.meta, spec=spec)
    members = [member_model(ensemble.model, one, k) for k in range(3)]
    for a, b in zip(members[0].get_weights(), alone.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(set(ensemble.history["member"])) == [0, 1, 2]
    mean = np.mean([m.predict(X[:50], verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.model.predict(X[:50], verbose=0), mean, atol=1e-6)
