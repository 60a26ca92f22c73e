"""Causal decoding with a transition grammar: an online HMM forward filter over a stream
model's per-sample class probabilities, one belief per device.

The stream model gives ``p(class | samples so far)`` at every sample. Divided by the classes'
prior, that is a likelihood up to a constant (the hybrid network/HMM trick); the filter weighs
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

import numpy as np

from models.exceptions import ModelsError

FLOOR = 1e-6
"""the smallest probability the filter lets the model say (one wrong 0.0 must not veto a class
for good)"""


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
            likelihood = np.maximum(probs[rows], FLOOR) ** self.temperature * self._weight
            b = (belief[live] @ self.transitions) * likelihood
            b /= b.sum(axis=1, keepdims=True)
            belief[live] = out[rows] = b
        self.belief[slots] = belief
        return out.astype(np.float32)
