"""Conformance suite of the zoo: every cell and architecture builds, saves, loads and steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.diagnostics import attention_weights, plot_attention
from models.exceptions import ModelsError
from models.io import load_model, read_meta, save_model
from models.spec import CELLS, ModelMeta, ModelSpec
from models.zoo import build_model, reset_state, stateful_copy

WINDOW_SPECS = [ModelSpec(cell=c, layers=2, hidden=8) for c in CELLS] + [
    ModelSpec(architecture="birnn", hidden=8),
    ModelSpec(architecture="mlp", layers=2, hidden=8),
    ModelSpec(architecture="cnn", layers=2, hidden=8),
    ModelSpec(cell="gru", hidden=8, conv_filters=4, dropout=0.2),
    ModelSpec(architecture="attention", cell="gru", layers=2, hidden=8),
    ModelSpec(architecture="attention", cell="lstm", hidden=8, dropout=0.2),
]
STREAM_SPECS = [ModelSpec(setup="stream", cell=c, layers=2, hidden=8) for c in CELLS] + [
    ModelSpec(setup="stream", cell="lstm", hidden=8, next_step=True)
]


def _activity(out):
    return out["activity"] if isinstance(out, dict) else out


@pytest.mark.parametrize("spec", WINDOW_SPECS + STREAM_SPECS, ids=lambda s: s.name)
def test_save_load_round_trip_gives_identical_outputs(spec, make_meta, raw_batch, tmp_path):
    meta = make_meta(spec)
    model = build_model(spec, meta)
    before = model.predict(raw_batch, verbose=0)
    path = save_model(model, meta, tmp_path / "m.keras")
    loaded, loaded_meta = load_model(path)
    after = loaded.predict(raw_batch, verbose=0)
    np.testing.assert_array_equal(_activity(before), _activity(after))
    if spec.next_step:
        np.testing.assert_array_equal(before["next"], after["next"])
    assert loaded_meta == meta
    assert read_meta(path).spec == spec
    probs = _activity(after)
    assert probs.shape[-1] == len(meta.classes)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("spec", WINDOW_SPECS[:3] + STREAM_SPECS[:1], ids=lambda s: s.name)
def test_normalisation_is_applied_inside_the_model(spec, make_meta, raw_batch):
    meta = make_meta(spec)
    model = build_model(spec, meta)
    normalised = model.get_layer("normalise")(raw_batch)
    expected = (raw_batch - np.array(meta.mean)) / np.array(meta.std)
    np.testing.assert_allclose(np.asarray(normalised), expected, rtol=1e-5, atol=1e-5)
    # the same model with an identity normalisation, fed pre-normalised data, agrees
    plain = build_model(spec, ModelMeta(**{**meta.__dict__, "mean": (0,) * 3, "std": (1,) * 3}))
    plain.set_weights(_swap_normalisation(model, plain))
    np.testing.assert_allclose(
        _activity(model.predict(raw_batch, verbose=0)),
        _activity(plain.predict(expected.astype(np.float32), verbose=0)),
        rtol=1e-4,
        atol=1e-5,
    )


def _swap_normalisation(trained: keras.Model, plain: keras.Model) -> list[np.ndarray]:
    """``trained``'s weights, with ``plain``'s (identity) normalisation statistics."""
    out = []
    for a, b in zip(trained.layers, plain.layers, strict=True):
        out += b.get_weights() if a.name == "normalise" else a.get_weights()
    return out


@pytest.mark.parametrize("spec", STREAM_SPECS, ids=lambda s: s.name)
def test_stepping_with_carried_state_equals_the_whole_sequence(spec, make_meta, raw_batch):
    meta = make_meta(spec)
    model = build_model(spec, meta)
    whole = _activity(model.predict(raw_batch, verbose=0))
    stepper = stateful_copy(model, spec, meta, batch_size=raw_batch.shape[0], steps=1)
    steps = [
        _activity(stepper.predict_on_batch(raw_batch[:, t : t + 1]))
        for t in range(raw_batch.shape[1])
    ]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, rtol=1e-5, atol=1e-6)
    # uneven chunks carry the state just the same
    reset_state(stepper)
    chunky = stateful_copy(model, spec, meta, batch_size=raw_batch.shape[0], steps=None)
    parts = [_activity(chunky.predict_on_batch(raw_batch[:, a:b])) for a, b in ((0, 5), (5, 12))]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-5, atol=1e-6)
    reset_state(chunky)
    again = _activity(chunky.predict_on_batch(raw_batch[:, :5]))
    np.testing.assert_allclose(again, whole[:, :5], rtol=1e-5, atol=1e-6)


def test_window_model_output_depends_on_early_samples_through_its_memory(make_meta, raw_batch):
    spec = ModelSpec(cell="lstm", hidden=8)
    model = build_model(spec, make_meta(spec))
    changed = raw_batch.copy()
    changed[:, 0] += 5.0  # only the first sample of each window
    assert not np.allclose(model.predict(raw_batch, verbose=0), model.predict(changed, verbose=0))


@pytest.mark.parametrize(
    "bad",
    [
        {"setup": "stream", "architecture": "birnn"},
        {"setup": "stream", "conv_filters": 8},
        {"next_step": True},
        {"layers": 4},
        {"cell": "transformer"},
        {"dropout": 1.0},
        {"setup": "stream", "architecture": "attention"},
    ],
)
def test_invalid_specs_are_refused(bad):
    with pytest.raises(ModelsError):
        ModelSpec(**bad)


def test_attention_weights_sum_to_one_over_time_and_are_plotted(make_meta, raw_batch, tmp_path):
    spec = ModelSpec(architecture="attention", cell="lstm", hidden=8)
    assert spec.name == "window-attention-lstm-1x8"
    model = build_model(spec, make_meta(spec))
    weights = attention_weights(model, raw_batch)
    assert weights.shape == raw_batch.shape[:2] and np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    # the class depends on the steps through their weights: the pooled state is their average
    states = keras.Model(model.inputs, model.get_layer("lstm_0").output).predict(raw_batch)
    pooled = keras.Model(model.inputs, model.get_layer("attended").output).predict(raw_batch)
    np.testing.assert_allclose(pooled, np.einsum("nt,nth->nh", weights, states), atol=1e-5)
    png = plot_attention(raw_batch[:3], weights[:3], tmp_path / "attention.png", ("x", "y", "z"))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_not_a_model_file(tmp_path):
    (tmp_path / "x.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelsError, match="not a harstream model"):
        read_meta(tmp_path / "x.keras")
    with pytest.raises(ModelsError, match="no such model"):
        read_meta(tmp_path / "missing.keras")
    with pytest.raises(ModelsError, match=".keras"):
        save_model(keras.Sequential([keras.Input((2,))]), None, tmp_path / "m.h5")
