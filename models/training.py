"""Training: windows by backpropagation through time, streams by truncated BPTT.

Both paths fit the normalisation on the training users only, weight classes against imbalance,
clip the gradient norm (exploding gradients), hold out whole users for early stopping, and fix
the seeds. Stream models are trained on chunks of ``tbptt_steps`` samples with the hidden state
carried from chunk to chunk for ``chunks_per_lane`` chunks (random start offsets every epoch), so
that the state they learn to use is one that keeps running, as it does in a worker for hours;
recordings shorter than that are padded at the end, the padding out of the loss. Unlabelled
samples (label -1) are masked out of every loss and metric. Both paths may also train on data
turned by random rotations, drawn afresh every epoch (``rotate_deg``, :mod:`models.augment`), so
that models learn activities rather than how a phone was worn. Seq2seq models (unlabelled) train
on windows of recordings, their labels ignored, with early stopping on the held-out users' loss.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from models.augment import axis_groups, random_rotations, rotated, turned
from models.exceptions import ModelsError, SpecError
from models.frame import GravityFrame
from models.hmm import Grammar, fit_grammar
from models.seq2seq import (
    THRESHOLD_QUANTILE,
    anomaly_scores,
    build_seq2seq,
    threshold_of,
    training_arrays,
)
from models.smoothing import fit_lag
from models.spec import ModelMeta, ModelSpec
from models.train_config import TrainConfig  # re-exported: training callers import it here
from models.windowing import balanced_class_weights, fit_normalisation, windows_from_recordings
from models.zoo import (
    ACTIVITY,
    NEXT,
    assemble,
    build_model,
    member_model,
    reset_state,
    stateful_copy,
)

log = logging.getLogger(__name__)

EpochHook = Callable[[int, int, dict[str, float]], None]
"""Called after every epoch with (epoch, epochs, logs)."""


@dataclass
class TrainResult:
    """A trained model, its metadata, the per-epoch history and the time it took."""

    model: keras.Model
    meta: ModelMeta
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    train_users: tuple[int, ...] = ()
    validation_users: tuple[int, ...] = ()


def split_users(
    users: Sequence[int], fraction: float, seed: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Distinct users split into (train, validation), never splitting one user's data."""
    distinct = np.array(sorted(set(int(u) for u in users)))
    if fraction <= 0 or len(distinct) < 2:
        return tuple(distinct.tolist()), ()
    rng = np.random.default_rng(seed)
    held = max(1, int(round(fraction * len(distinct))))
    val = set(rng.choice(distinct, size=held, replace=False).tolist())
    return tuple(u for u in distinct.tolist() if u not in val), tuple(sorted(val))


def split_recordings(
    recordings: Sequence, users: Sequence[int], held_out: Sequence[int]
) -> tuple[list, list]:
    """``recordings`` (one per entry of ``users``) split into those of the other users and
    those of ``held_out``."""
    held = set(int(u) for u in held_out)
    train = [rec for rec, u in zip(recordings, users, strict=True) if int(u) not in held]
    return train, [rec for rec, u in zip(recordings, users, strict=True) if int(u) in held]


def _compile(model: keras.Model, config: TrainConfig, spec: ModelSpec, steps: int) -> None:
    """Adam with gradient-norm clipping; ``steps`` is the number of updates per epoch."""
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, config.epochs * steps, alpha=0.01)
    optimizer = keras.optimizers.Adam(rate, clipnorm=config.clipnorm)
    if spec.setup == "seq2seq":
        model.compile(optimizer=optimizer, loss="mse")
    elif spec.next_step:
        model.compile(
            optimizer=optimizer,
            loss={ACTIVITY: "sparse_categorical_crossentropy", NEXT: "mse"},
            loss_weights={ACTIVITY: 1.0, NEXT: config.next_step_weight},
        )
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")


def _meta(spec, channels, classes, rate_hz, mean, std, window, stride, provenance) -> ModelMeta:
    return ModelMeta(
        spec=spec,
        channels=tuple(channels),
        classes=tuple(classes),
        rate_hz=float(rate_hz),
        mean=mean,
        std=std,
        window=int(window),
        stride=int(stride),
        provenance=dict(provenance or {}),
    )


def _frame(spec: ModelSpec, channels: Sequence[str], rate_hz: float) -> GravityFrame | None:
    """The gravity frame the model will read, if it reads one (refused channels fail here,
    before any training)."""
    return GravityFrame.for_channels(channels, rate_hz) if spec.frame == "gravity" else None


def _normalisation(start: keras.Model | None, X: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """The starting model's normalisation (mean, std), or one fitted to ``X``."""
    if start is None:
        return fit_normalisation(X)
    members = [layer for layer in start.layers if layer.name.endswith("normalise")]
    layer = members[0]  # an ensemble's members share it (trained on the same users)
    mean, variance = (np.ravel(keras.ops.convert_to_numpy(v)) for v in (layer.mean, layer.variance))
    return tuple(mean.tolist()), tuple(np.sqrt(variance).tolist())


def _initial(spec: ModelSpec, meta: ModelMeta, start: keras.Model | None) -> keras.Model:
    """A new model for ``spec``, holding ``start``'s weights when fine-tuning."""
    model = build_model(spec, meta)
    if start is not None:
        _start_from(model, start, spec)
    return model


def _member_start(
    start: keras.Model | None, meta: ModelMeta, k: int, members: int
) -> keras.Model | None:
    """What member ``k`` (of ``meta``) fine-tunes from: ``start`` itself, or its member ``k``
    when ``start`` is an ensemble of ``members``."""
    if start is None or members == 1:
        return start
    return member_model(start, meta, k)


def _start_from(model: keras.Model, start: keras.Model, spec: ModelSpec) -> None:
    """``start``'s weights into ``model``, a new model of ``spec``."""
    try:
        model.set_weights(start.get_weights())
    except ValueError as exc:
        raise ModelsError(f"cannot fine-tune: the starting model is not a {spec.name}") from exc


class _L2SP(keras.regularizers.Regularizer):
    """``factor`` times the squared distance of a weight from its starting value."""

    def __init__(self, start: np.ndarray, factor: float) -> None:
        self.start, self.factor = keras.ops.convert_to_tensor(start), factor

    def __call__(self, x):
        return self.factor * keras.ops.sum(keras.ops.square(x - self.start))


def _anchor(
    model: keras.Model, config: TrainConfig, head: tuple[str, ...] = (ACTIVITY, NEXT)
) -> None:
    """Fine-tuning options on ``model`` (holding the starting weights), before it compiles;
    ``head``: the names of its output layers."""
    if config.tune == "head":
        for layer in model.layers:
            layer.trainable = layer.name in head
    if config.l2_sp > 0:
        for w in model.trainable_weights:
            w.regularizer = _L2SP(keras.ops.convert_to_numpy(w), config.l2_sp)


def _fit_callbacks(
    cfg: TrainConfig, started: float, on_epoch: EpochHook | None
) -> list[keras.callbacks.Callback]:
    """The time budget and the epoch hook, for ``model.fit``."""
    callbacks: list[keras.callbacks.Callback] = [_Budget(cfg.max_seconds, started)]
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: on_epoch(e + 1, cfg.epochs, dict(logs or {}))
            )
        )
    return callbacks


def _fitted(model, meta, history, started, train_users, val_users) -> TrainResult:
    """The result of ``model.fit``'s ``history``, timed from ``started``."""
    return TrainResult(
        model,
        meta,
        {k: [float(v) for v in vs] for k, vs in history.history.items()},
        time.perf_counter() - started,
        train_users,
        val_users,
    )


def train_window_model(
    spec: ModelSpec,
    X: np.ndarray,
    y: np.ndarray,
    users: np.ndarray,
    *,
    channels: Sequence[str],
    classes: Sequence[str],
    rate_hz: float,
    stride: int,
    config: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
    provenance: dict[str, Any] | None = None,
    start: keras.Model | None = None,
) -> TrainResult:
    """Train a many-to-one model on windows ``X`` (N, T, C) with labels ``y`` (-1 = skip).

    ``start``: fine-tune this model (same spec; its normalisation is kept) instead of
    initialising a new one. An ensemble (``spec.members`` > 1) trains member ``k`` with seed
    ``config.seed + k``, on the training users of ``config.seed``, each for up to
    ``max_seconds``; ``history`` then runs member after member (``member``: whose epoch).
    """
    cfg = config or TrainConfig()
    if spec.setup != "window":
        raise SpecError("train_window_model trains window (many-to-one) models")
    keep = y >= 0
    X, y, users = X[keep], y[keep].astype(np.int32), np.asarray(users)[keep]
    keras.utils.set_random_seed(cfg.seed)
    train_users, val_users = split_users(users, cfg.validation_users, cfg.seed)
    is_val = np.isin(users, val_users)
    X_fit, y_fit = X[~is_val], y[~is_val]
    X_val, y_val = X[is_val], y[is_val]
    groups = _turned_groups(cfg, channels)
    if groups:
        # the held-out users' windows are turned too (once, seeded): early stopping then keeps
        # the epoch that copes best with phones worn at other angles
        X_val = np.concatenate([X_val, rotated(X_val, groups, cfg.rotate_deg, cfg.seed)])
        y_val = np.tile(y_val, 2)
    frame = _frame(spec, channels, rate_hz)
    mean, std = _normalisation(start, X_fit if frame is None else frame.features_of(X_fit))
    meta = _meta(spec, channels, classes, rate_hz, mean, std, X.shape[1], stride, provenance)
    weights = (
        balanced_class_weights(y_fit, len(classes))
        if cfg.class_weights
        else np.ones(len(classes), np.float32)
    )
    history: dict[str, list[float]] = {"loss": []}
    started = time.perf_counter()

    def fit_one(one: ModelMeta, member_cfg: TrainConfig, member_start) -> keras.Model:
        model = _initial(one.spec, one, member_start)
        if start is not None:
            _anchor(model, member_cfg)
        batches = _WindowBatches(X_fit, y_fit, weights, member_cfg, groups)
        _compile(model, member_cfg, spec, steps=len(batches))
        callbacks = _fit_callbacks(member_cfg, time.perf_counter(), on_epoch)
        if len(X_val):
            callbacks.insert(0, _BestAccuracy(X_val, y_val, cfg.patience))
        fit = model.fit(batches, epochs=cfg.epochs, callbacks=callbacks, shuffle=False, verbose=0)
        for layer in model.layers:  # saved unfrozen: the next fine-tune chooses for itself
            layer.trainable = True
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        return model

    model = _train_members(meta, cfg, start, history, fit_one)
    return TrainResult(model, meta, history, time.perf_counter() - started, train_users, val_users)


def _train_members(
    meta: ModelMeta, cfg: TrainConfig, start: keras.Model | None, history: dict,
    fit_one: Callable[[ModelMeta, TrainConfig, keras.Model | None], keras.Model],
) -> keras.Model:  # fmt: skip
    """``meta.spec.members`` models, member ``k`` trained by ``fit_one`` (one model's meta, the
    config with seed ``cfg.seed + k``, its part of ``start``) after the global seed is set to
    that; the one model, or the ensemble of them. ``history["member"]`` names each epoch's
    member."""
    spec = meta.spec
    one = replace(meta, spec=replace(spec, members=1))
    members = []
    for k in range(spec.members):
        member_cfg = replace(cfg, seed=cfg.seed + k)
        keras.utils.set_random_seed(member_cfg.seed)
        begun = len(history["loss"])
        members.append(fit_one(one, member_cfg, _member_start(start, one, k, spec.members)))
        if spec.members > 1:
            history.setdefault("member", []).extend([k] * (len(history["loss"]) - begun))
    return members[0] if spec.members == 1 else assemble(members, meta)


def _turned_groups(cfg: TrainConfig, channels: Sequence[str]) -> list[tuple[int, int, int]]:
    """The x/y/z channel groups that ``rotate_deg`` turns; none when it is 0."""
    if not cfg.rotate_deg:
        return []
    if not (groups := axis_groups(channels)):
        raise SpecError("rotate_deg needs x/y/z channels (names ending in x, y and z)")
    return groups


class _WindowBatches(keras.utils.PyDataset):
    """Shuffled training batches ``(X, y, class weight)``; with ``groups`` to turn, every epoch
    also holds a copy of each window turned by a fresh random rotation (``rotate_deg``)."""

    def __init__(self, X, y, class_weight, cfg: TrainConfig, groups) -> None:
        super().__init__()
        self.X, self.y, self.w = X, y, class_weight[y].astype(np.float32)
        self.batch_size, self.groups, self.max_deg = cfg.batch_size, groups, cfg.rotate_deg
        self.rng = np.random.default_rng(cfg.seed)
        self.size = len(X) * (2 if groups else 1)
        self.on_epoch_end()  # draws the first epoch

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(self.size)
        if self.groups:
            self.turns = random_rotations(len(self.X), self.max_deg, self.rng)

    def __getitem__(self, i: int):
        pick = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        source = pick % len(self.X)
        X = self.X[source]
        copies = pick >= len(self.X)
        if copies.any():
            X[copies] = turned(X[copies], self.groups, self.turns[source[copies]])
        return X, self.y[source], self.w[source]


class _Budget(keras.callbacks.Callback):
    """Stops training after the epoch in which the time budget ran out."""

    def __init__(self, max_seconds: float | None, started: float) -> None:
        super().__init__()
        self.max_seconds, self.started = max_seconds, started

    def on_epoch_end(self, epoch, logs=None):
        if _spent(self.max_seconds, self.started, epoch + 1, self.params.get("epochs", 0)):
            self.model.stop_training = True


def _spent(max_seconds: float | None, started: float, epoch: int, epochs: int) -> bool:
    """Whether the time budget has run out after ``epoch`` of ``epochs`` (said when it stops a
    training early: the learning rate did not decay, averaged weights miss epochs)."""
    if max_seconds is None or time.perf_counter() - started <= max_seconds:
        return False
    if epoch < epochs:
        log.warning("the time budget of %g min ran out after epoch %d of %d: training stopped "
                    "early (give it more: harstream train --max-minutes)", max_seconds / 60,
                    epoch, epochs)  # fmt: skip
    return True


class _BestAccuracy(keras.callbacks.Callback):
    """Early stopping on held-out users' accuracy, restoring the best weights at the end."""

    def __init__(self, X: np.ndarray, y: np.ndarray, patience: int) -> None:
        super().__init__()
        self.X, self.y, self.patience = X, y, patience
        self.best, self.best_weights, self.waited = -1.0, None, 0

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.X, batch_size=512, verbose=0)
        acc = float(np.mean(np.argmax(probs, axis=-1) == self.y))
        if logs is not None:
            logs["val_accuracy"] = acc
        if acc > self.best:
            self.best, self.best_weights, self.waited = acc, self.model.get_weights(), 0
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


# ---------------------------------------------------------------------------------------------
# stream (many-to-many) models: truncated BPTT with carried state


def _segments(
    lengths: Sequence[int], span: int, lanes: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(recording, start) of every whole ``span`` after a random offset, shuffled; a recording
    of ``span`` samples or fewer is one segment from its start (padded by :func:`_lane_batch`).
    Fewer segments than ``lanes`` are topped up with segments drawn again, so that one batch runs.
    """
    out = []
    for r, n in enumerate(lengths):
        if n < 2:  # nothing to predict the next sample of
            continue
        if n <= span:
            out.append((r, 0))
            continue
        offset = int(rng.integers(0, min(span, n - span)))
        out += [(r, s) for s in range(offset, n - span, span)]  # keeps one sample for "next"
    rng.shuffle(out)
    if out and len(out) < lanes:
        out += [out[i] for i in rng.integers(0, len(out), lanes - len(out))]
    return out


def _segment_count(lengths: Sequence[int], span: int) -> int:
    """Segments :func:`_segments` draws from recordings of ``lengths`` before topping them up:
    at most this many (random offsets can leave out one per recording)."""
    return sum(max(1, (n - 1) // span) for n in lengths if n >= 2)


def masked_targets(labels: np.ndarray, class_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels safe for the loss and per-sample weights: 0 where a sample is unlabelled (-1).

    >>> y, w = masked_targets(np.array([1, -1, 0]), np.array([2.0, 0.5], np.float32))
    >>> y.tolist(), w.tolist()
    ([1, 0, 0], [0.5, 0.0, 2.0])
    """
    weights = np.where(labels >= 0, class_weight[np.maximum(labels, 0)], 0.0)
    return np.maximum(labels, 0).astype(np.int32), weights.astype(np.float32)


def _lane_batch(
    recordings, segments, span, mean, std, class_weight, groups=(), turns=None,
    frame=None, next_step=True,
):  # fmt: skip
    """Inputs ``(lanes, span, C)``, labels, their weights, the normalised next samples (None
    without ``next_step``) and the weights of those, for the ``(recording, start)`` ``segments``.

    With a gravity ``frame``, the next samples are the frame's features (from the segment's
    start, where the model's state is reset too).

    A segment running past its recording's end is padded with the last sample (finite values);
    from the recording's last sample on (it has no next sample) both weights are 0. With
    ``groups``, segment ``i`` is turned by rotation ``turns[i]`` before it is split into inputs
    and next samples, so that both see the same orientation.
    """
    steps = np.arange(span + 1)
    ends = np.array([len(recordings[r][0]) - 1 - s for r, s in segments])  # inputs with a next
    take = [np.minimum(s + steps, s + e) for (_, s), e in zip(segments, ends, strict=True)]
    X = np.stack([recordings[r][0][i] for (r, _), i in zip(segments, take, strict=True)])
    if groups:
        X = turned(X, groups, turns)
    real = (steps[:-1] < ends[:, None]).astype(np.float32)
    y, w = masked_targets(
        np.stack([recordings[r][1][i[:-1]] for (r, _), i in zip(segments, take, strict=True)]),
        class_weight,
    )
    nxt = None
    if next_step:
        nxt = (((X if frame is None else frame.features_of(X))[:, 1:] - mean) / std).astype(
            np.float32
        )
    return X[:, :-1], y, w * real, nxt, real


def predict_streams(model: keras.Model, recordings: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Class probabilities for every sample of each recording, the state never reset.

    Recordings are run side by side, padded to the longest; a stream model is causal, so the
    padding after a recording's end cannot change its outputs.
    """
    if not recordings:
        return []
    longest = max(len(v) for v in recordings)
    batch = np.zeros((len(recordings), longest, recordings[0].shape[1]), np.float32)
    for i, v in enumerate(recordings):
        batch[i, : len(v)] = v
        batch[i, len(v) :] = v[-1]  # repeat the last sample: finite and in range
    out = model.predict(batch, batch_size=len(recordings), verbose=0)
    probs = out[ACTIVITY] if isinstance(out, dict) else out
    return [probs[i, : len(v)] for i, v in enumerate(recordings)]


def masked_accuracy(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    """Accuracy over annotated samples (label >= 0) of all recordings."""
    hits = total = 0
    for p, y in zip(probs, labels, strict=True):
        mask = y >= 0
        hits += int(np.sum(np.argmax(p[mask], axis=-1) == y[mask]))
        total += int(mask.sum())
    return hits / total if total else float("nan")


def train_stream_model(
    spec: ModelSpec,
    recordings: Sequence[tuple[np.ndarray, np.ndarray]],
    users: Sequence[int],
    *,
    channels: Sequence[str],
    classes: Sequence[str],
    rate_hz: float,
    config: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
    provenance: dict[str, Any] | None = None,
    start: keras.Model | None = None,
) -> TrainResult:
    """Train a many-to-many model on whole recordings ``[(values (n, C), labels (n,)), ...]``.

    Truncated BPTT: ``lanes`` segments of ``tbptt_steps * chunks_per_lane`` samples are trained
    side by side, chunk after chunk, the hidden state carried across chunks and reset between
    segments. Gradients flow back ``tbptt_steps`` samples; the state carries further. A recording
    shorter than a segment is one segment, padded at its end (weight 0; the causal state over its
    samples is unchanged); too few segments for the lanes are drawn again.
    ``rotate_deg``: each segment is turned by one fresh rotation every epoch; the held-out users'
    recordings are validated as they are and turned once.
    ``start``: fine-tune this model (same spec; its normalisation is kept).
    An ensemble (``spec.members`` > 1): member ``k`` is trained with seed ``config.seed + k``,
    all on the same training users (those of ``config.seed``), each for up to ``max_seconds``;
    the ensemble averages their probabilities, and early stopping and the grammar see the
    held-out users. ``history`` then runs member after member (``member``: whose epoch).
    """
    cfg = config or TrainConfig()
    if spec.setup != "stream":
        raise SpecError("train_stream_model trains stream (many-to-many) models")
    groups = _turned_groups(cfg, channels)
    train_users, val_users = split_users(users, cfg.validation_users, cfg.seed)
    train, val = split_recordings(recordings, users, val_users)
    lengths = [len(v) for v, _ in train]
    if max(lengths, default=0) < 2:
        raise ModelsError("no training recording of 2 samples or more (an input and its next)")
    val_values, val_labels = [v for v, _ in val], [y for _, y in val]
    if groups and val:  # turned once, seeded: early stopping keeps what copes with other angles
        val_values += rotated(val_values, groups, cfg.rotate_deg, cfg.seed)
        val_labels *= 2
    frame = _frame(spec, channels, rate_hz)
    values = [v for v, _ in train]
    mean, std = _normalisation(
        start, np.concatenate(values if frame is None else frame.features_of_each(values))
    )
    span = cfg.tbptt_steps * cfg.chunks_per_lane
    meta = _meta(spec, channels, classes, rate_hz, mean, std, span, 1, provenance)
    history: dict[str, list[float]] = {"loss": [], "val_accuracy": []}
    started = time.perf_counter()
    model = _train_members(meta, cfg, start, history, lambda one, member_cfg, member_start: (
        _fit_stream(one, train, (val_values, val_labels), member_cfg, groups, history,
                    member_start, on_epoch)
    ))  # fmt: skip
    grammar = fit_decoding(model, [y for _, y in train], val, classes, rate_hz,
                           cfg.class_weights)  # fmt: skip
    meta = replace(meta, grammar=grammar)
    return TrainResult(model, meta, history, time.perf_counter() - started, train_users, val_users)


def fit_decoding(
    model: keras.Model, train_labels: Sequence[np.ndarray], val: Sequence[tuple], classes,
    rate_hz: float, balanced: bool,
) -> Grammar:  # fmt: skip
    """The grammar a stream model's training ends with: transitions from ``train_labels``,
    the causal filter's temperature (:func:`models.hmm.fit_grammar`) and the fixed-lag
    smoother's per delay (:func:`models.smoothing.fit_lag`) chosen on the ``val`` recordings
    ``(values, labels)``, each labelled by ``model`` from its start. ``balanced``: the model
    was trained with balanced class weights (a uniform prior)."""
    val_probs = predict_streams(model, [v for v, _ in val]) if val else []
    val_labels = [y for _, y in val]
    grammar = fit_grammar(train_labels, val_probs, val_labels, classes, balanced=balanced)
    return fit_lag(grammar, val_probs, val_labels, classes, rate_hz)


def _fit_stream(
    meta: ModelMeta, train, val: tuple[list, list], cfg: TrainConfig, groups, history: dict,
    start: keras.Model | None, on_epoch: EpochHook | None,
) -> keras.Model:  # fmt: skip
    """One stream model of ``meta`` trained by truncated BPTT on ``train`` recordings, early
    stopping on ``val`` (values, labels): the model at its best epoch. Appends to ``history``."""
    spec, classes = meta.spec, meta.classes
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    turn_rng = np.random.default_rng((cfg.seed, 1))  # its own: the same segments either way
    lengths = [len(v) for v, _ in train]
    k, span = cfg.tbptt_steps, cfg.tbptt_steps * cfg.chunks_per_lane
    model = _initial(spec, meta, start)
    trainer = stateful_copy(model, spec, meta, batch_size=cfg.lanes, steps=k)
    if start is not None:
        _anchor(trainer, cfg)
    per_epoch = max(1, _segment_count(lengths, span) // cfg.lanes)  # batches
    chunks = min(cfg.chunks_per_lane, -(-(max(lengths) - 1) // k))  # all-padding ones are skipped
    _compile(trainer, cfg, spec, steps=per_epoch * chunks)
    cw = (
        balanced_class_weights(np.concatenate([y for _, y in train]), len(classes))
        if cfg.class_weights
        else np.ones(len(classes), np.float32)
    )
    m, s = np.asarray(meta.mean, np.float32), np.asarray(meta.std, np.float32)
    frame = meta.frame
    val_values, val_labels = val
    best, best_weights, waited = -1.0, None, 0
    recent: deque[list[np.ndarray]] = deque(maxlen=max(1, cfg.average_epochs))
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        segments = _segments(lengths, span, cfg.lanes, rng)
        turns = random_rotations(len(segments), cfg.rotate_deg, turn_rng) if groups else None
        losses = []
        for g in range(0, len(segments) - cfg.lanes + 1, cfg.lanes):
            lane = slice(g, g + cfg.lanes)
            X, y, w, nxt, nw = _lane_batch(
                train, segments[lane], span, m, s, cw, groups,
                turns[lane] if groups else None, frame, spec.next_step,
            )  # fmt: skip
            reset_state(trainer)
            for c in range(0, span, k):
                part = slice(c, c + k)
                if not nw[:, part].any():  # padding on every lane from here on
                    break
                if spec.next_step:
                    targets = {ACTIVITY: y[:, part], NEXT: nxt[:, part]}
                    weights = {ACTIVITY: w[:, part], NEXT: nw[:, part]}
                    loss = trainer.train_on_batch(X[:, part], targets, sample_weight=weights)
                else:
                    loss = trainer.train_on_batch(X[:, part], y[:, part], sample_weight=w[:, part])
                losses.append(float(np.ravel(loss)[0]))
        model.set_weights(trainer.get_weights())
        if cfg.average_epochs:
            recent.append(model.get_weights())
        logs = {"loss": float(np.mean(losses))}
        if val_values:
            acc = masked_accuracy(predict_streams(model, val_values), val_labels)
            logs["val_accuracy"] = acc
            if acc > best:
                best, best_weights, waited = acc, model.get_weights(), 0
            else:
                waited += 1
        for key in ("loss", "val_accuracy"):
            history[key].append(logs.get(key, float("nan")))
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs, logs)
        if waited >= cfg.patience and not cfg.average_epochs:
            break
        if _spent(cfg.max_seconds, started, epoch + 1, cfg.epochs):
            break
    if cfg.average_epochs:  # the end of the schedule, averaged
        model.set_weights([np.mean(ws, axis=0) for ws in zip(*recent, strict=True)])
    elif best_weights is not None:
        model.set_weights(best_weights)
    return model


# ---------------------------------------------------------------------------------------------
# seq2seq models: unlabelled windows, reconstruction or forecast error

SEQ2SEQ_HEAD = ("reconstruction", "flat_reconstruction", "forecast")
"""the output layers of seq2seq models (what ``tune="head"`` fine-tunes)"""


def train_seq2seq_model(
    spec: ModelSpec,
    recordings: Sequence[tuple[np.ndarray, np.ndarray]],
    users: Sequence[int],
    *,
    channels: Sequence[str],
    rate_hz: float,
    window: int,
    stride: int,
    config: TrainConfig | None = None,
    on_epoch: EpochHook | None = None,
    provenance: dict[str, Any] | None = None,
    start: keras.Model | None = None,
) -> TrainResult:
    """Train a seq2seq model on windows of ``window`` samples (plus the ``horizon`` a forecaster
    predicts) every ``stride`` samples of recordings ``[(values (n, C), labels), ...]``, the
    labels ignored. Early stopping on the held-out users' loss (best weights kept); the
    metadata's anomaly threshold is the :data:`~models.seq2seq.THRESHOLD_QUANTILE` of the
    training windows' scores (recomputed when fine-tuning).
    ``start``: fine-tune this (inference) model (same spec; its normalisation is kept);
    ``tune="head"`` trains only its output layer (:data:`SEQ2SEQ_HEAD`).
    """
    cfg = config or TrainConfig()
    if spec.setup != "seq2seq":
        raise SpecError("train_seq2seq_model trains seq2seq (encoder-decoder) models")
    if cfg.rotate_deg:
        raise SpecError("rotate_deg is for classifiers, not seq2seq models")
    keras.utils.set_random_seed(cfg.seed)
    length = window + spec.horizon
    X, _, g = windows_from_recordings(recordings, length, stride, users)
    train_users, val_users = split_users(users, cfg.validation_users, cfg.seed)
    is_val = np.isin(g, val_users)
    X_fit, X_val = X[~is_val], X[is_val]
    if not len(X_fit):
        raise ModelsError(f"no training recording of {length} samples or more (one window)")
    frame = _frame(spec, channels, rate_hz)
    mean, std = _normalisation(start, X_fit if frame is None else frame.features_of(X_fit))
    meta = _meta(spec, channels, (), rate_hz, mean, std, window, stride, provenance)
    trainer, model = build_seq2seq(spec, meta)
    if start is not None:
        _start_from(model, start, spec)
        _anchor(trainer, cfg, SEQ2SEQ_HEAD)
    _compile(trainer, cfg, spec, steps=-(-len(X_fit) // cfg.batch_size))
    started = time.perf_counter()
    callbacks = _fit_callbacks(cfg, started, on_epoch)
    validation = None
    if len(X_val):
        validation = training_arrays(meta, X_val)
        callbacks.insert(0, keras.callbacks.EarlyStopping(
            "val_loss", patience=cfg.patience, restore_best_weights=True
        ))  # fmt: skip
    inputs, targets = training_arrays(meta, X_fit)
    history = trainer.fit(inputs, targets, batch_size=cfg.batch_size, epochs=cfg.epochs,
                          validation_data=validation, callbacks=callbacks, verbose=0)  # fmt: skip
    for layer in trainer.layers:  # saved unfrozen: the next fine-tune chooses for itself
        layer.trainable = True
    scores = anomaly_scores(model, meta, X_fit)
    meta = replace(meta, threshold=threshold_of(scores), threshold_quantile=THRESHOLD_QUANTILE)
    return _fitted(model, meta, history, started, train_users, val_users)
