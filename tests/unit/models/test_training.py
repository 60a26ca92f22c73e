"""Training: BPTT on windows, truncated BPTT on streams, masking, clipping, seeds, user splits."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.augment import random_rotations, rotated
from models.exceptions import ModelsError, SpecError
from models.spec import ModelSpec
from models.training import (
    TrainConfig,
    _lane_batch,
    _segments,
    _WindowBatches,
    masked_accuracy,
    masked_targets,
    predict_streams,
    split_recordings,
    split_users,
    train_stream_model,
    train_window_model,
)
from models.windowing import balanced_class_weights, fit_normalisation, windows_from_recordings
from models.zoo import build_model

CHANNELS, CLASSES = ("a", "b"), ("LOW", "HIGH")
AXES = ("acc_x", "acc_y", "acc_z", "light", "gyro_x", "gyro_y", "gyro_z")


def _recordings(n_rec=8, n=600, seed=0, channels=2):
    """Two activities told apart by the level of channel 0, switching every 100 samples."""
    rng = np.random.default_rng(seed)
    recs = []
    for r in range(n_rec):
        labels = ((np.arange(n) + 37 * r) // 100 % 2).astype(np.int16)
        values = rng.normal(size=(n, channels)).astype(np.float32) * 0.3
        values[:, 0] += np.where(labels == 1, 1.0, -1.0) + 4.0
        labels[rng.random(n) < 0.2] = -1  # unannotated
        recs.append((values, labels))
    return recs, [r % 4 + 1 for r in range(n_rec)]


def test_split_users_never_splits_a_user_and_is_seeded():
    train, val = split_users([1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10], 0.2, seed=1)
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(1, 11))
    assert len(val) == 2 and split_users(range(1, 11), 0.2, seed=1) == (train, val)
    assert split_users([3, 3], 0.5, 0) == ((3,), ())


def test_split_recordings_keeps_each_users_recordings_together_in_order():
    recs, users = ["a", "b", "c", "d", "e"], np.array([4, 7, 4, 9, 7])
    assert split_recordings(recs, users, (7,)) == (["a", "c", "d"], ["b", "e"])
    assert split_recordings(recs, users, ()) == (recs, [])


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
    with pytest.raises(ModelsError, match="rotate_deg needs x/y/z channels"):
        train_stream_model(
            ModelSpec(setup="stream", hidden=4), recs, users, channels=CHANNELS,
            classes=CLASSES, rate_hz=50, config=TrainConfig(rotate_deg=10.0),
        )  # fmt: skip
    with pytest.raises(ModelsError, match="no training recording of 2 samples"):
        train_stream_model(
            ModelSpec(setup="stream", hidden=4), [(v[:1], y[:1]) for v, y in recs], users,
            channels=CHANNELS, classes=CLASSES, rate_hz=50, config=TrainConfig(epochs=1),
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


def test_short_recordings_train_as_one_padded_segment_each():
    """Recordings far shorter than a segment (64 samples here) and fewer than the lanes."""
    recs, users = _recordings(n_rec=3, n=40)
    recs = [(v[:n], y[:n]) for (v, y), n in zip(recs, (20, 33, 40), strict=True)]
    cfg = TrainConfig(epochs=2, tbptt_steps=16, chunks_per_lane=4, lanes=4, validation_users=0.3)
    spec = ModelSpec(setup="stream", cell="lstm", hidden=8, next_step=True)
    result = train_stream_model(
        spec, recs, users, channels=CHANNELS, classes=CLASSES, rate_hz=50.0, config=cfg
    )
    assert result.meta.window == 64 and len(result.validation_users) == 1
    assert len(result.history["loss"]) == 2 and np.all(np.isfinite(result.history["loss"]))
    segments = _segments([20, 1, 33], 64, 4, np.random.default_rng(0))
    assert len(segments) == 4 and set(segments) == {(0, 0), (2, 0)}  # topped up; 1 sample: none


def test_a_time_budget_that_stops_a_training_early_says_so(caplog):
    recs, users = _recordings(n_rec=3, n=40)
    cfg = TrainConfig(epochs=3, tbptt_steps=16, chunks_per_lane=2, lanes=2, max_seconds=1e-6,
                      average_epochs=2)  # fmt: skip
    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    with caplog.at_level("WARNING", logger="models.training"):
        result = train_stream_model(spec, recs, users, channels=CHANNELS, classes=CLASSES,
                                    rate_hz=50.0, config=cfg)  # fmt: skip
    assert len(result.history["loss"]) == 1
    assert "ran out after epoch 1 of 3" in caplog.text and "--max-minutes" in caplog.text


def test_lane_batch_pads_short_recordings_out_of_the_loss():
    recs, _ = _recordings(n_rec=2, n=200)
    recs[0] = (recs[0][0][:10], recs[0][1][:10])
    mean, std = np.array([4.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    cw = np.array([1.0, 3.0], np.float32)
    X, y, w, nxt, nw = _lane_batch(recs, [(0, 0), (1, 50)], 16, mean, std, cw)
    assert X.shape == (2, 16, 2) and nxt.shape == (2, 16, 2)
    np.testing.assert_array_equal(X[0, :10], recs[0][0])
    np.testing.assert_array_equal(X[0, 10:], np.broadcast_to(recs[0][0][-1], (6, 2)))  # finite
    # the last sample has no next one: weights 0 from there on, for both heads
    assert nw[0].tolist() == [1.0] * 9 + [0.0] * 7 and not w[0, 9:].any()
    # a segment within its recording: as before padding existed
    values, labels = recs[1]
    np.testing.assert_array_equal(X[1], values[50:66])
    np.testing.assert_array_equal(nxt[1], ((values[51:67] - mean) / std).astype(np.float32))
    y1, w1 = masked_targets(labels[50:66], cw)
    np.testing.assert_array_equal(y[1], y1)
    np.testing.assert_array_equal(w[1], w1)
    assert nw[1].tolist() == [1.0] * 16


def test_lane_batch_turns_each_segment_by_one_rotation():
    recs, _ = _recordings(n_rec=2, n=100, channels=len(AXES))
    groups = [(0, 1, 2), (4, 5, 6)]
    segments, span, cw = [(0, 3), (1, 70)], 20, np.ones(2, np.float32)
    zero, one = np.zeros(len(AXES), np.float32), np.ones(len(AXES), np.float32)
    turns = random_rotations(2, 90.0, np.random.default_rng(0))
    X, _, w, nxt, _ = _lane_batch(recs, segments, span, zero, one, cw, groups, turns)
    X0, _, w0, _, _ = _lane_batch(recs, segments, span, zero, one, cw)
    np.testing.assert_allclose(nxt[:, :-1], X[:, 1:])  # the next-step targets are turned too
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(X[:, :, 3], X0[:, :, 3])  # not an axis: untouched
    assert not np.allclose(X, X0, atol=1e-3)
    whole = np.concatenate([X, nxt[:, -1:]], axis=1)  # the span + 1 samples of each segment
    whole0 = np.stack([recs[r][0][s : s + span + 1] for r, s in segments])
    for a in map(list, groups):  # every sample's length kept ...
        np.testing.assert_allclose(
            np.linalg.norm(whole[..., a], axis=-1), np.linalg.norm(whole0[..., a], axis=-1),
            rtol=1e-5,
        )  # fmt: skip
    # ... and the angle between any two samples of a segment, of any two sensors: one turn
    gram = np.einsum("ntgc,nuhc->ntguh", whole[..., groups], whole[..., groups])
    gram0 = np.einsum("ntgc,nuhc->ntguh", whole0[..., groups], whole0[..., groups])
    np.testing.assert_allclose(gram, gram0, rtol=1e-4, atol=1e-4)


def test_stream_training_turns_segments_and_validates_on_turned_recordings(monkeypatch):
    seen = []

    def spy(X, groups, max_deg, seed):
        seen.append((len(X), tuple(groups), max_deg, seed))
        return rotated(X, groups, max_deg, seed)

    monkeypatch.setattr("models.training.rotated", spy)
    recs, users = _recordings(n_rec=4, n=60, channels=len(AXES))
    cfg = TrainConfig(epochs=2, tbptt_steps=16, chunks_per_lane=2, lanes=4, rotate_deg=180.0,
                      validation_users=0.25, seed=2)  # fmt: skip
    spec = ModelSpec(setup="stream", cell="gru", hidden=8, next_step=True)
    result = train_stream_model(
        spec, recs, users, channels=AXES, classes=CLASSES, rate_hz=50.0, config=cfg
    )
    assert np.all(np.isfinite(result.history["loss"])) and len(result.validation_users) == 1
    assert seen == [(1, ((0, 1, 2), (4, 5, 6)), 180.0, 2)]  # its 1 recording, turned once


def test_stream_training_can_keep_the_mean_of_its_last_epochs(monkeypatch):
    """``average_epochs = k``: the schedule runs to its end whatever the patience, and the kept
    weights are the mean of those after each of the last k epochs (taken where the epoch's
    validation reads them), not the best epoch's."""
    after_epoch = []
    validate = predict_streams

    def spy(model, recordings):
        after_epoch.append(model.get_weights())
        return validate(model, recordings)

    monkeypatch.setattr("models.training.predict_streams", spy)
    recs, users = _recordings(n_rec=4, n=60)
    cfg = TrainConfig(epochs=4, patience=1, tbptt_steps=16, chunks_per_lane=2, lanes=4,
                      validation_users=0.25, learning_rate=0.05, average_epochs=2,
                      seed=1)  # fmt: skip
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    result = train_stream_model(spec, recs, users, channels=CHANNELS, classes=CLASSES,
                                rate_hz=50.0, config=cfg)  # fmt: skip
    assert len(result.history["loss"]) == 4  # patience 1 stops nothing
    epochs = after_epoch[:4]  # then the grammar's validation reads the kept weights
    for kept, *last in zip(result.model.get_weights(), *epochs[2:], strict=True):
        np.testing.assert_allclose(kept, np.mean(last, axis=0), rtol=1e-6)
    assert not np.allclose(epochs[2][0], epochs[3][0])  # two different epochs were averaged
    with pytest.raises(SpecError, match="average_epochs"):
        TrainConfig(average_epochs=-1)
