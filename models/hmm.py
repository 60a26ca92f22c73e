"""Causal decoding with a transition grammar: an online HMM forward filter over a stream
model's per-sample class probabilities, one belief per device.

The stream model gives ``p(class | samples so far)`` at every sample. Divided by the classes'
prior it carries (uniform for a model trained with balanced class weights), that is a
likelihood up to a constant (the hybrid network/HMM trick); the filter weighs
it, raised to ``temperature`` (below 1 trusts the model less), against the belief carried from
the previous sample through the transition matrix ``A`` learnt from training label sequences::

    belief_t  ∝  (belief_{t-1} @ A) * (p_t / prior) ** temperature

Activities follow a grammar (sitting becomes standing only through stand-up), which ``A``
knows and the model alone does not. Everything is vectorised across devices: a batch costs one
small matrix product per step of its longest run, never per-sample Python.

>>> A, prior = estimate([np.array([0, 0, 0, 1, 1, 1])], classes=2, smoothing=0.0)
>>> A.round(2).tolist(), prior.round(2).tolist()
([[0.67, 0.33], [0.0, 1.0]], [0.5, 0.5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.evaluation import evaluate
from models.exceptions import ModelsError

FLOOR = 1e-6
"""the smallest probability the filter lets the model say (one wrong 0.0 must not veto a class
for good)"""
SMOOTHING = 1.0
"""added to every transition count"""
TEMPERATURES = (0.25, 0.5, 0.75, 1.0)
"""the temperatures :func:`fit_grammar` tries on the validation users"""


@dataclass(frozen=True)
class Grammar:
    """The HMM a stream model's per-sample probabilities are decoded with, kept in its metadata:
    transitions and class prior from the training users' labels, the temperature that did best
    on the validation users, and whether decoding beat the model alone there (``enabled``; a
    worker decodes only then). ``validation``: macro-F1 there without and with decoding.
    ``lags``: per delay measured on the validation users, ``(delay_ms, temperature,
    centred, smoothed)``: the temperature of the fixed-lag HMM smoother, None where it did not
    beat the centred mean, and the macro-F1 of both there (:mod:`models.smoothing`)."""

    transitions: tuple[tuple[float, ...], ...]
    prior: tuple[float, ...]
    temperature: float
    enabled: bool
    validation: tuple[float, float] = (float("nan"), float("nan"))
    lags: tuple[tuple[float, float | None, float, float], ...] = ()

    def lag_temperature(self, delay_ms: float) -> float | None:
        """The fixed-lag smoother's temperature for labels ``delay_ms`` late: that of the delay
        measured nearest to it (by ratio), None for the centred mean (or nothing measured)."""
        if not self.lags or delay_ms <= 0:
            return None
        return min(self.lags, key=lambda fit: abs(np.log(fit[0] / delay_ms)))[1]

    def decoder(self, capacity: int = 1024, temperature: float | None = None) -> ForwardFilter:
        """A forward filter of this grammar for up to ``capacity`` devices, at its own
        temperature unless given another."""
        return ForwardFilter(np.array(self.transitions), np.array(self.prior),
                             self.temperature if temperature is None else temperature,
                             capacity)  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict) -> Grammar:
        return cls(tuple(map(tuple, raw["transitions"])), tuple(raw["prior"]),
                   float(raw["temperature"]), bool(raw["enabled"]),
                   tuple(raw.get("validation", (float("nan"),) * 2)),
                   tuple(tuple(fit) for fit in raw.get("lags", ())))  # fmt: skip


def fit_grammar(
    train_labels: Sequence[np.ndarray], val_probs: Sequence[np.ndarray],
    val_labels: Sequence[np.ndarray], classes: Sequence[str], balanced: bool = False,
) -> Grammar:  # fmt: skip
    """The :class:`Grammar` of a stream model: transitions from ``train_labels``; each of
    :data:`TEMPERATURES` decodes the model's probabilities on the validation recordings
    (``val_probs``, each from its start), the best macro-F1 wins, and decoding is enabled if
    it beats the model's own argmax (without validation recordings: at 1.0, not enabled, no
    evidence that it helps). ``balanced``: the model was trained with balanced class weights,
    so its probabilities carry no class prior and the grammar's prior (what they are divided
    by) is uniform; the training labels' shares would count the prior twice."""
    A, prior = estimate(train_labels, len(classes), SMOOTHING)
    if balanced:
        prior = np.full(len(classes), 1.0 / len(classes))
    pack = lambda t: tuple(map(float, t))  # noqa: E731
    rows = tuple(pack(r) for r in A)
    if not len(val_probs):
        return Grammar(rows, pack(prior), 1.0, False)
    y = np.concatenate(val_labels)

    def f1(decoded: Sequence[np.ndarray]) -> float:
        return evaluate(y, np.concatenate([p.argmax(-1) for p in decoded]), classes).macro_f1

    plain, counts = f1(val_probs), [len(p) for p in val_probs]
    scored = []
    for t in TEMPERATURES:  # every recording at once, as devices
        f = ForwardFilter(A, prior, t, capacity=len(val_probs))
        decoded = f.filter(np.arange(len(counts)), counts, np.concatenate(val_probs))
        scored.append((f1([decoded]), t))
    best, temperature = max(scored)
    return Grammar(rows, pack(prior), temperature, best > plain, (plain, best))


def estimate(
    labels: Sequence[np.ndarray], classes: int, smoothing: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, prior)`` from per-recording label sequences (``-1``: unannotated, pairs touching
    one are skipped): ``A[i, j]`` the probability that a sample of class ``i`` is followed by
    one of class ``j``, with ``smoothing`` added to every count; ``prior`` the classes' share
    of the annotated samples (smoothed alike)."""
    if classes < 1 or smoothing < 0:
        raise ModelsError("an HMM needs classes >= 1 and smoothing >= 0")
    counts = np.full((classes, classes), float(smoothing))
    seen = np.full(classes, float(smoothing))
    for y in labels:
        y = np.asarray(y, np.int64)
        if len(y) and (y.max() >= classes or y.min() < -1):
            raise ModelsError(f"labels must be -1 or in [0, {classes}), not {y.min()}..{y.max()}")
        a, b = y[:-1], y[1:]
        keep = (a >= 0) & (b >= 0)
        np.add.at(counts, (a[keep], b[keep]), 1.0)
        seen += np.bincount(y[y >= 0], minlength=classes)
    rows = counts.sum(axis=1, keepdims=True)
    if np.any(rows == 0) or seen.sum() == 0:
        raise ModelsError("a class never followed by another: give smoothing > 0 or more labels")
    return counts / rows, seen / seen.sum()


class ForwardFilter:
    """The forward filter of ``(A, prior)`` for up to ``capacity`` devices (slots), each
    starting from ``prior``; ``get_state``/``set_state`` carry a device's belief across
    checkpoints."""

    def __init__(
        self, transitions: np.ndarray, prior: np.ndarray, temperature: float = 1.0,
        capacity: int = 1024,
    ) -> None:  # fmt: skip
        A, prior = np.asarray(transitions, np.float64), np.asarray(prior, np.float64)
        k = len(prior)
        if A.shape != (k, k) or not np.allclose(A.sum(axis=1), 1.0) or np.any(A < 0):
            raise ModelsError(f"transitions must be a ({k}, {k}) row-stochastic matrix")
        if np.any(prior <= 0) or not np.isclose(prior.sum(), 1.0):
            raise ModelsError("prior must be positive and sum to 1")
        if temperature <= 0:
            raise ModelsError("temperature must be > 0")
        self.transitions, self.prior, self.temperature = A, prior, float(temperature)
        self._weight = prior**-self.temperature
        self.belief = np.tile(prior, (max(1, capacity), 1))

    @property
    def capacity(self) -> int:
        return len(self.belief)

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > self.capacity:
            more = np.tile(self.prior, (max(capacity, 2 * self.capacity) - self.capacity, 1))
            self.belief = np.concatenate([self.belief, more])

    def reset(self, slots) -> None:
        """Forget what ``slots`` believed: they start again from the prior."""
        self.belief[np.asarray(slots, np.int64)] = self.prior

    def get_state(self, slot: int) -> np.ndarray:
        return self.belief[slot].astype(np.float32)

    def set_state(self, slot: int, belief: np.ndarray) -> None:
        self.belief[slot] = belief

    def likelihood(self, probs: np.ndarray) -> np.ndarray:
        """The model's probabilities as the filter weighs them: ``(p / prior) ** temperature``
        (up to a constant), ``p`` at least :data:`FLOOR`."""
        return np.maximum(np.asarray(probs, np.float64), FLOOR) ** self.temperature * self._weight

    def filter(self, slots, counts, probs: np.ndarray) -> np.ndarray:
        """The filtered probabilities ``(T, K)`` of a batch: device ``slots[i]`` brings
        ``counts[i]`` consecutive rows of ``probs`` (the model's, run after run); each
        device's belief moves on to its last sample."""
        slots, counts = np.asarray(slots, np.int64), np.asarray(counts, np.int64)
        probs = np.asarray(probs, np.float64)
        out = np.empty_like(probs)
        starts = np.cumsum(counts) - counts
        belief = self.belief[slots]
        for j in range(int(counts.max(initial=0))):
            live = np.flatnonzero(counts > j)
            rows = starts[live] + j
            b = (belief[live] @ self.transitions) * self.likelihood(probs[rows])
            b /= b.sum(axis=1, keepdims=True)
            belief[live] = out[rows] = b
        self.belief[slots] = belief
        return out.astype(np.float32)
