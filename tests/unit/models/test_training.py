"""Training: BPTT on windows, truncated BPTT on streams, masking, clipping, seeds, user splits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.augment import rotated
from models.exceptions import ModelsError
from models.spec import ModelSpec
from models.training import (
    TrainConfig,
    _WindowBatches,
    masked_accuracy,
    masked_targets,
    predict_streams,
    split_users,
    train_stream_model,
    train_window_model,
)
from models.windowing import balanced_class_weights, fit_normalisation, windows_from_recordings
from models.zoo import build_model

CHANNELS, CLASSES = ("a", "b"), ("LOW", "HIGH")


def _recordings(n_rec=8, n=600, seed=0):
    """Two activities told apart by the level of channel a, switching every 100 samples."""
    rng = np.random.default_rng(seed)
    recs = []
    for r in range(n_rec):
        labels = ((np.arange(n) + 37 * r) // 100 % 2).astype(np.int16)
        values = rng.normal(size=(n, 2)).astype(np.float32) * 0.3
        values[:, 0] += np.where(labels == 1, 1.0, -1.0) + 4.0
        labels[rng.random(n) < 0.2] = -1  # unannotated
        recs.append((values, labels))
    return recs, [r % 4 + 1 for r in range(n_rec)]


def test_split_users_never_splits_a_user_and_is_seeded():
    train, val = split_users([1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10], 0.2, seed=1)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(1, 11))
    assert len(val) == 2 and split_users(range(1, 11), 0.2, seed=1) == (train, val)
    assert split_users([3, 3], 0.5, 0) == ((3,), ())


def test_class_weights_and_normalisation():
    w = balanced_class_weights(np.array([0, 0, 0, 1, -1, -1]), 3)
    np.testing.assert_allclose(w, [4 / 6, 4 / 2, 1.0])
    mean, std = fit_normalisation(np.array([[[1.0, 5.0]], [[3.0, 5.0]]]))
    assert mean == (2.0, 5.0) and std == (1.0, 1.0)  # constant channel left unscaled


def test_window_training_learns_and_holds_out_users():
    recs, users = _recordings()
    X, y, g = windows_from_recordings(recs, 20, 10, users)
    result = train_window_model(
        ModelSpec(cell="gru", hidden=8),
        X,
        y,
        g,
        channels=CHANNELS,
        classes=CLASSES,
        rate_hz=50.0,
        stride=10,
        config=TrainConfig(epochs=4, validation_users=0.25, learning_rate=0.01),
    )
    assert len(result.validation_users) == 1
    assert set(result.train_users).isdisjoint(result.validation_users)
    keep = y >= 0
    probs = result.model.predict(X[keep], verbose=0)
    assert np.mean(probs.argmax(-1) == y[keep]) > 0.9
    assert result.meta.window == 20 and result.meta.stride == 10
    assert result.meta.mean[0] == pytest.approx(4.0, abs=0.1)
    assert result.history["val_accuracy"]


def test_gradient_clipping_is_configured():
    recs, users = _recordings(n_rec=2)
    X, y, g = windows_from_recordings(recs, 20, 10, users)
    kwargs = dict(channels=CHANNELS, classes=CLASSES, rate_hz=50.0, stride=10)
    spec = ModelSpec(cell="rnn", hidden=4)
    cfg = TrainConfig(epochs=1, clipnorm=0.5, validation_users=0)
    result = train_window_model(spec, X, y, g, config=cfg, **kwargs)
    assert result.model.optimizer.clipnorm == 0.5


def test_masked_targets_zero_the_weight_of_unlabelled_samples():
    y, w = masked_targets(np.array([[0, -1, 1, -1]]), np.array([1.0, 3.0], np.float32))
    assert y.tolist() == [[0, 0, 1, 0]] and w.tolist() == [[1.0, 0.0, 3.0, 0.0]]


def test_masked_samples_do_not_move_the_weights(make_meta):
    """A zero-weight sample's label has no effect on the update: the mask reaches the loss."""
    spec = ModelSpec(setup="stream", cell="lstm", hidden=4)
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    labels = np.array([[0, -1, 1, 2, -1, 0], [1, 1, -1, 0, 2, 2]])
    results = []
    for fill in (0, 2):  # what the loss sees at the masked positions
        keras.utils.set_random_seed(0)
        model = build_model(spec, make_meta(spec))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        y, w = masked_targets(labels, np.ones(3, np.float32))
        y = np.where(labels < 0, fill, y)
        model.train_on_batch(x, y, sample_weight=w)
        results.append(model.get_weights())
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_bptt_stream_training_learns_and_is_seeded():
    recs, users = _recordings()
    cfg = TrainConfig(
        epochs=3, tbptt_steps=25, chunks_per_lane=4, lanes=4, learning_rate=0.01, seed=3
    )
    kwargs = dict(channels=CHANNELS, classes=CLASSES, rate_hz=50.0, config=cfg)
    spec = ModelSpec(setup="stream", cell="lstm", hidden=8, next_step=True)
    first = train_stream_model(spec, recs, users, **kwargs)
    second = train_stream_model(spec, recs, users, **kwargs)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.meta.window == 100 and first.meta.spec.setup == "stream"
    probs = predict_streams(first.model, [v for v, _ in recs])
    assert [p.shape for p in probs] == [(600, 2)] * len(recs)
    assert masked_accuracy(probs, [y for _, y in recs]) > 0.9
    assert np.all(np.isfinite(first.history["loss"]))


def test_predict_streams_padding_does_not_change_outputs(make_meta):
    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    model = build_model(spec, make_meta(spec))
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(7, 3)), rng.normal(size=(19, 3))
    together = predict_streams(model, [short.astype(np.float32), long.astype(np.float32)])
    alone = predict_streams(model, [short.astype(np.float32)])
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-5, atol=1e-6)


def test_bad_configs_and_setups():
    with pytest.raises(ModelsError):
        TrainConfig(epochs=0)
    recs, users = _recordings(n_rec=2, n=50)
    X, y, g = windows_from_recordings(recs, 20, 10, users)
    with pytest.raises(ModelsError, match="window"):
        train_window_model(
            ModelSpec(setup="stream"), X, y, g, channels=CHANNELS, classes=CLASSES,
            rate_hz=50, stride=10,
        )  # fmt: skip
    with pytest.raises(ModelsError, match="rotate_deg needs x/y/z channels"):  # even unvalidated
        train_window_model(
            ModelSpec(hidden=4), X, y, g, channels=CHANNELS, classes=CLASSES, rate_hz=50,
            stride=10, config=TrainConfig(rotate_deg=10.0, validation_users=0.0),
        )  # fmt: skip
    with pytest.raises(ModelsError, match="rotate_deg augments window models"):
        train_stream_model(
            ModelSpec(setup="stream", hidden=4), recs, users, channels=CHANNELS,
            classes=CLASSES, rate_hz=50, config=TrainConfig(rotate_deg=10.0),
        )  # fmt: skip
    with pytest.raises(ModelsError, match="no training segment"):
        train_stream_model(
            ModelSpec(setup="stream", hidden=4), recs, users, channels=CHANNELS,
            classes=CLASSES, rate_hz=50, config=TrainConfig(epochs=1, tbptt_steps=64),
        )  # fmt: skip


def test_held_out_users_windows_are_turned_once_too(monkeypatch):
    seen = []

    def spy(X, groups, max_deg, seed):
        seen.append((len(X), tuple(groups), max_deg, seed))
        return rotated(X, groups, max_deg, seed)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 10, 3)).astype(np.float32)
    y, users = np.tile([0, 1, -1, 1], 10), np.repeat(np.arange(1, 11), 4)
    monkeypatch.setattr("models.training.rotated", spy)
    result = train_window_model(
        ModelSpec(cell="lstm", hidden=4), X, y, users, channels=("acc_x", "acc_y", "acc_z"),
        classes=CLASSES, rate_hz=50, stride=10,
        config=TrainConfig(epochs=1, rotate_deg=15.0, validation_users=0.2, seed=3),
    )  # fmt: skip
    assert len(result.validation_users) == 2  # their 2 x 3 labelled windows, turned once
    assert seen == [(6, ((0, 1, 2),), 15.0, 3)]


def test_every_epoch_turns_a_fresh_copy_of_every_training_window():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 5, 3)).astype(np.float32)
    y = np.arange(10) % 2
    cfg = TrainConfig(batch_size=4, rotate_deg=30.0, seed=1)
    batches = _WindowBatches(X, y, np.array([1.0, 3.0], np.float32), cfg, [(0, 1, 2)])

    def epoch():
        parts = [batches[i] for i in range(len(batches))]
        batches.on_epoch_end()
        return [np.concatenate(k) for k in zip(*parts, strict=True)]

    (X1, y1, w1), (X2, _, _) = epoch(), epoch()
    assert len(batches) == 5 and len(X1) == 20
    np.testing.assert_array_equal(w1, np.where(y1 == 1, 3.0, 1.0))  # class weights ride along

    def split(Xe):  # each original once, and a turned copy of each: same norms, other values
        same = [int(np.flatnonzero((Xe == x).all(axis=(1, 2)))[0]) for x in X]
        turned = np.delete(Xe, same, axis=0)
        order = np.argsort(np.linalg.norm(turned, axis=(1, 2)))
        return turned[order]

    c1, c2 = split(X1), split(X2)
    by_norm = X[np.argsort(np.linalg.norm(X, axis=(1, 2)))]
    np.testing.assert_allclose(
        np.linalg.norm(c1, axis=2), np.linalg.norm(by_norm, axis=2), rtol=1e-5
    )
    assert not np.allclose(c1, by_norm, atol=1e-3)
    assert not np.allclose(c1, c2, atol=1e-3)  # new draws every epoch


def test_rotation_is_a_training_option_within_half_a_turn():
    assert TrainConfig(rotate_deg=20.0).rotate_deg == 20.0
    with pytest.raises(ModelsError, match="rotate_deg"):
        TrainConfig(rotate_deg=200.0)
