"""The delayed refiner (models.refine): its inputs, its training chunks, its served outputs, and
that it learns to use the samples after the one it labels."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import evaluate
from models.exceptions import ModelsError
from models.hmm import Grammar, estimate
from models.refine import (
    RefineConfig,
    RefinerData,
    delayed_chunks,
    fit_refiner,
    refined,
    refiner_channels,
    refiner_inputs,
)
from models.refiner_runtime import FLOOR, LAG_KEY
from models.spec import ModelSpec
from models.training import predict_streams

CLASSES = ("rest", "move")


def _grammar(labels) -> Grammar:
    A, prior = estimate(labels, len(CLASSES))
    return Grammar(tuple(map(tuple, A)), tuple(prior), 1.0, True)


def _segments(rng, n: int) -> np.ndarray:
    """Labels in runs of 15..40 samples of alternating classes."""
    y, c = [], int(rng.integers(2))
    while len(y) < n:
        y += [c] * int(rng.integers(15, 41))
        c = 1 - c
    return np.array(y[:n], np.int64)


def _early(y: np.ndarray, ahead: int, rng) -> np.ndarray:
    """A labeller that names each sample by the label ``ahead`` samples later (with noise): its
    own argmax is wrong after each change, but the samples after one tell what it was."""
    later = np.concatenate([y[ahead:], np.repeat(y[-1:], ahead)])
    p = np.where(later[:, None] == np.arange(2), 0.8, 0.2) + rng.normal(0, 0.05, (len(y), 2))
    p = np.clip(p, 0.01, None)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def test_inputs_are_the_log_probabilities_and_the_log_beliefs():
    rng = np.random.default_rng(0)
    ys = [_segments(rng, 50), _segments(rng, 80)]
    probs = [_early(y, 3, rng) for y in ys]
    probs[0][0] = (0.0, 1.0)
    g = _grammar(ys)
    x = refiner_inputs(probs, g)
    assert [a.shape for a in x] == [(50, 4), (80, 4)]
    np.testing.assert_allclose(x[1][:, :2], np.log(probs[1]), rtol=1e-6)
    assert x[0][0, 0] == pytest.approx(np.log(FLOOR))
    beliefs = g.decoder(1).filter([0], [80], probs[1])
    np.testing.assert_allclose(x[1][:, 2:], np.log(np.maximum(beliefs, FLOOR)), rtol=1e-5)
    with pytest.raises(ModelsError, match="3 classes"):
        refiner_inputs(probs, Grammar(((1 / 3,) * 3,) * 3, (1 / 3,) * 3, 1.0, True))


def test_chunk_targets_are_the_labels_lag_samples_back():
    rng = np.random.default_rng(1)
    lag, cfg = 5, RefineConfig(chunk=16, warm=3)
    y = np.arange(40) % 2
    y[20] = -1  # unannotated
    x = np.arange(40, dtype=np.float32)[:, None].repeat(4, axis=1)
    xs, ts, ws = delayed_chunks([x], [y], lag, cfg, rng)
    covered = set()
    for chunk, target, weight in zip(xs, ts, ws, strict=True):
        start = int(chunk[0, 0])
        first = start == 0
        for j in np.flatnonzero(weight):
            sample = start + j - lag
            assert target[j] == y[sample] and y[sample] >= 0
            assert j >= (lag if first else cfg.warm)  # a later chunk: warmed up
            covered.add(sample)
        assert chunk[:, 0].max() <= 39  # past the end: the last sample again
    annotated = {i for i in range(40 - lag) if y[i] >= 0}
    assert annotated <= covered  # every annotated sample with a later one in reach is a target


def test_served_output_of_a_sample_is_the_refiners_lag_samples_later():
    import keras  # noqa: PLC0415  (only this test builds a model)

    from models.spec import ModelMeta  # noqa: PLC0415
    from models.zoo import build_model  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    meta = ModelMeta(spec=spec, channels=("a", "b", "c", "d"), classes=CLASSES, rate_hz=50.0,
                     mean=(0.0,) * 4, std=(1.0,) * 4, window=16, stride=8)  # fmt: skip
    model = build_model(spec, meta)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(30, 4)).astype(np.float32), rng.normal(size=(12, 4)).astype(np.float32)]
    out = refined(model, xs, lag=4)
    assert [len(o) for o in out] == [30, 12]
    whole = predict_streams(model, [np.concatenate([xs[0], np.repeat(xs[0][-1:], 4, axis=0)])])
    np.testing.assert_allclose(out[0], whole[0][4:], atol=1e-5)
    with pytest.raises(ModelsError, match="lag"):
        refined(model, xs, lag=0)


def test_a_refiner_learns_what_the_samples_after_one_say_about_it():
    rng = np.random.default_rng(3)
    ahead, lag = 4, 8

    def data(n):
        ys = [_segments(rng, 300) for _ in range(n)]
        return ys, [_early(y, ahead, rng) for y in ys]

    (ytr, ptr), (yva, pva), (yte, pte) = data(24), data(4), data(6)
    g = _grammar(ytr)
    spec = ModelSpec(setup="stream", cell="gru", hidden=16)
    cfg = RefineConfig(spec=spec, chunk=96, warm=8, batch_size=8, learning_rate=1e-2, epochs=12,
                       patience=12)  # fmt: skip
    data = RefinerData((refiner_inputs(ptr, g), ytr), (refiner_inputs(pva, g), yva))
    model, meta, history = fit_refiner(data, CLASSES, 50.0, lag, cfg)
    assert meta.provenance[LAG_KEY] == lag and meta.channels == refiner_channels(CLASSES)
    assert len(history["val_macro_f1"]) == len(history["loss"]) >= 1
    y = np.concatenate(yte)
    own = evaluate(y, np.concatenate(pte).argmax(-1), CLASSES).macro_f1
    mine = evaluate(y, np.concatenate(refined(model, refiner_inputs(pte, g), lag)).argmax(-1),
                    CLASSES).macro_f1  # fmt: skip
    assert own < 0.9
    assert mine > own + 0.05, (own, mine, history)


def test_bad_settings_are_refused_before_training():
    with pytest.raises(ModelsError, match="one stream model"):
        RefineConfig(spec=ModelSpec(setup="window"))
    with pytest.raises(ModelsError, match="warm"):
        RefineConfig(chunk=8, warm=8)
    x, y = [np.zeros((10, 6), np.float32)], [np.zeros(10, np.int64)]
    with pytest.raises(ModelsError, match="reads 4 inputs"):
        fit_refiner(RefinerData((x, y), (x, y)), CLASSES, 50.0, 2, RefineConfig())
    with pytest.raises(ModelsError, match="needs training and validation"):
        fit_refiner(RefinerData(([], []), (x, y)), CLASSES, 50.0, 2, RefineConfig())
