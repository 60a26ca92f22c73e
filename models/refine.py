"""Delayed labels, learned: the *refiner*, a small causal stream model over what a frozen
labeller gives a worker for every sample (its log-probabilities and its HMM forward filter's
log-beliefs, :mod:`models.hmm`), trained to name the sample ``lag`` steps back.

It sees what the fixed-lag smoother (:mod:`models.smoothing`) sees, the samples up to ``lag``
after the one it labels, but learns what follows a transition instead of assuming a
first-order grammar. It is a stream model like the labeller (a GRU, :data:`REFINER`), so it
costs one step per sample and device whatever the lag; a bidirectional pass over the last
``lag`` samples, with the same inputs, would cost ``lag`` steps per sample.

Trained on the labeller's training users (whose probabilities are what the labeller learned
on: more confident than on new users), selected by macro-F1 on its validation users.

>>> refiner_channels(("sit", "walk"))
('p_sit', 'p_walk', 'hmm_sit', 'hmm_walk')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np

from models.evaluation import evaluate
from models.exceptions import ModelsError
from models.hmm import Grammar
from models.refiner_runtime import LAG_KEY, log_inputs
from models.spec import ModelMeta, ModelSpec
from models.training import predict_streams
from models.windowing import fit_normalisation
from models.zoo import build_model

REFINER = ModelSpec(setup="stream", cell="gru", layers=1, hidden=64)


@dataclass(frozen=True)
class RefineConfig:
    """How a refiner is trained: chunks of ``chunk`` samples (half overlapping, from a random
    offset each epoch) whose first ``warm`` outputs only warm its state up, ``batch_size`` chunks
    per update, Adam at ``learning_rate`` with the gradient norm clipped to 1; the epoch with
    the best validation macro-F1, after at most ``epochs``, stopping ``patience`` epochs
    without a better one."""

    spec: ModelSpec = REFINER
    chunk: int = 1024
    warm: int = 64
    batch_size: int = 32
    learning_rate: float = 1e-3
    epochs: int = 40
    patience: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.spec.setup != "stream" or self.spec.members != 1:
            raise ModelsError("a refiner is one stream model")
        if not 0 <= self.warm < self.chunk or min(self.batch_size, self.epochs) < 1:
            raise ModelsError("a refiner needs 0 <= warm < chunk, batch_size >= 1, epochs >= 1")


def refiner_channels(classes: Sequence[str]) -> tuple[str, ...]:
    """A refiner's inputs: the labeller's probability of each class, then its HMM's belief."""
    return tuple(f"p_{c}" for c in classes) + tuple(f"hmm_{c}" for c in classes)


def refiner_inputs(probs: Sequence[np.ndarray], grammar: Grammar) -> list[np.ndarray]:
    """Per recording (the labeller's ``(T, K)`` probabilities, each from the recording's
    start), the refiner's ``(T, 2K)`` inputs: the log-probabilities and the log-beliefs of
    ``grammar``'s causal filter, floored at :data:`models.refiner_runtime.FLOOR`."""
    if not probs:
        return []
    counts = [len(p) for p in probs]
    stack = np.concatenate(probs).astype(np.float32)
    if stack.shape[1] != len(grammar.prior):
        raise ModelsError(f"{stack.shape[1]} probabilities per sample for a grammar of "
                          f"{len(grammar.prior)} classes")  # fmt: skip
    beliefs = grammar.decoder(len(counts)).filter(np.arange(len(counts)), counts, stack)
    return np.split(log_inputs(stack, beliefs), np.cumsum(counts)[:-1])


def delayed_chunks(
    inputs: Sequence[np.ndarray], labels: Sequence[np.ndarray], lag: int, config: RefineConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Training chunks ``(x, y, weight)``: ``chunk`` samples of a recording, the target of
    output ``j`` the label of sample ``j - lag``; weight 1 where that sample is annotated, inside
    the recording and past the warm-up (a recording's first chunk needs none: its state starts
    where a device's does)."""
    n, step = config.chunk, config.chunk // 2
    xs, ys, ws = [], [], []
    for x, y in zip(inputs, labels, strict=True):
        offset = int(rng.integers(0, step))
        starts = sorted({max(0, s) for s in range(-offset, max(1, len(x) - lag), step)})
        for s in starts:
            e = min(s + n, len(x))
            chunk = np.repeat(x[e - 1 : e], n, axis=0)  # past the end: the last sample again
            chunk[: e - s] = x[s:e]
            j = np.arange(e - s)
            source = s + j - lag
            ok = (source >= 0) & (j >= (config.warm if s else 0))
            ok[ok] = y[source[ok]] >= 0
            target, weight = np.zeros(n, np.int32), np.zeros(n, np.float32)
            target[j[ok]], weight[j[ok]] = y[source[ok]], 1.0
            xs.append(chunk)
            ys.append(target)
            ws.append(weight)
    return np.stack(xs), np.stack(ys), np.stack(ws)


def refined(model: keras.Model, inputs: Sequence[np.ndarray], lag: int) -> list[np.ndarray]:
    """Per recording, the refiner's probabilities of each sample: its output ``lag`` samples
    later (for the last ``lag``, as a stream that ends is flushed: the last input repeated)."""
    if lag < 1:
        raise ModelsError(f"a refiner's lag is >= 1 sample, not {lag}")
    padded = [np.concatenate([x, np.repeat(x[-1:], lag, axis=0)]) for x in inputs]
    return [p[lag:] for p in predict_streams(model, padded)]


@dataclass(frozen=True)
class RefinerData:
    """What a refiner learns from: per recording, its inputs (:func:`refiner_inputs`) and
    labels, of the labeller's training users (``train``) and validation users (``val``)."""

    train: tuple[list[np.ndarray], list[np.ndarray]]
    val: tuple[list[np.ndarray], list[np.ndarray]]

    @classmethod
    def of(cls, labeller: keras.Model, grammar: Grammar, train: Sequence[tuple],
           val: Sequence[tuple]) -> RefinerData:  # fmt: skip
        """The ``labeller``'s probabilities (decoded by ``grammar``'s filter too) over the
        ``(values, labels)`` recordings ``train`` and ``val``, as a refiner reads them."""
        sets = []
        for recs in (train, val):
            probs = predict_streams(labeller, [v for v, _ in recs])
            sets.append((refiner_inputs(probs, grammar), [y for _, y in recs]))
        return cls(*sets)


def fit_refiner(
    data: RefinerData, classes: Sequence[str], rate_hz: float, lag: int,
    config: RefineConfig = RefineConfig(), on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[keras.Model, ModelMeta, dict[str, list[float]]]:  # fmt: skip
    """A refiner trained on ``data.train`` to label the sample ``lag`` back, kept at its best
    epoch on ``data.val``: the model, its metadata (the lag in its provenance,
    :data:`models.refiner_runtime.LAG_KEY`) and its history (``loss``, ``val_macro_f1`` per
    epoch; ``on_epoch(epoch, val_macro_f1)`` after each)."""
    train, val = data.train, data.val
    if not train[0] or not val[0]:
        raise ModelsError("a refiner needs training and validation recordings")
    k = len(classes)
    if train[0][0].shape[1] != 2 * k:
        raise ModelsError(f"a refiner of {k} classes reads {2 * k} inputs per sample")
    mean, std = fit_normalisation(np.concatenate(train[0]))
    meta = ModelMeta(spec=config.spec, channels=refiner_channels(classes), classes=tuple(classes),
                     rate_hz=rate_hz, mean=mean, std=std, window=config.chunk,
                     stride=config.chunk // 2, provenance={LAG_KEY: lag})  # fmt: skip
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.spec, meta)
    model.compile(keras.optimizers.Adam(config.learning_rate, clipnorm=1.0),
                  "sparse_categorical_crossentropy")  # fmt: skip
    rng = np.random.default_rng(config.seed)
    y_val = np.concatenate(val[1])
    history: dict[str, list[float]] = {"loss": [], "val_macro_f1": []}
    best, weights = -1.0, model.get_weights()
    for epoch in range(config.epochs):
        x, y, w = delayed_chunks(*train, lag, config, rng)
        fit = model.fit(x, y, sample_weight=w, batch_size=config.batch_size, epochs=1,
                        shuffle=True, verbose=0)  # fmt: skip
        labels = np.concatenate(refined(model, val[0], lag)).argmax(-1)
        score = evaluate(y_val, labels, classes).macro_f1
        history["loss"].append(float(fit.history["loss"][-1]))
        history["val_macro_f1"].append(score)
        if on_epoch is not None:
            on_epoch(epoch, score)
        if score > best:
            best, weights = score, model.get_weights()
        elif epoch - int(np.argmax(history["val_macro_f1"])) >= config.patience:
            break
    model.set_weights(weights)
    return model, meta, history
