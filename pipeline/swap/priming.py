"""Priming: bring a runtime's per-device states up to date by running their ring buffers.

A hidden state kept for one set of weights is worth nothing to another, so a new model (a hot
swap) or a state written by another version (a restore) starts from zero and replays each
device's last samples; :func:`catch_up` replays only what arrived since an earlier copy. A
model whose labels are decoded (an HMM, :mod:`models.hmm`) has its beliefs primed alongside,
over the same samples, and so has a model's refiner its state (:func:`primable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from models.hmm import ForwardFilter
    from models.refiner_runtime import RefinerRuntime
    from models.runtime import StepOutput, StreamRuntime
    from pipeline.serving import ServingModel


class Decoded:
    """A runtime advanced with what reads its probabilities: its HMM decoder, its refiner
    (:mod:`models.refiner_runtime`), each device's belief and refiner state moving over the
    same samples as its hidden state (one formed from another model's probabilities is worth as
    little as its state)."""

    def __init__(self, runtime: StreamRuntime, decoder: ForwardFilter | None,
                 refiner: RefinerRuntime | None = None) -> None:  # fmt: skip
        self.runtime, self.decoder, self.refiner = runtime, decoder, refiner
        self._readers = [r for r in (decoder, refiner) if r is not None]

    def ensure_capacity(self, capacity: int) -> None:
        self.runtime.ensure_capacity(capacity)
        for reader in self._readers:
            reader.ensure_capacity(capacity)

    def reset(self, slots) -> None:
        self.runtime.reset(slots)
        for reader in self._readers:
            reader.reset(slots)

    def advance(self, slots, counts, samples) -> StepOutput:
        out = self.runtime.advance(slots, counts, samples)
        beliefs = None
        if self.decoder is not None:
            beliefs = self.decoder.filter(slots, counts, out.probs)
        if self.refiner is not None:
            self.refiner.advance(slots, counts, out.probs, beliefs)
        return out


def primable(serving: ServingModel) -> StreamRuntime | Decoded:
    """What priming advances for ``serving``: its runtime, with its decoder and refiner when it
    has them."""
    assert serving.runtime is not None, "only stream models are primed"
    if serving.decoder is None and serving.refiner is None:
        return serving.runtime
    return Decoded(serving.runtime, serving.decoder, serving.refiner)


@dataclass(frozen=True)
class Rings:
    """The store's ring buffers and sample counts at a batch boundary."""

    ring: np.ndarray
    seen: np.ndarray
    used: np.ndarray
    """slots holding a device"""
    fresh: np.ndarray
    """slots reset since the previous copy: primed afresh from their ring"""


def prime(runtime: StreamRuntime | Decoded, ring: np.ndarray, seen: np.ndarray,
          slots: np.ndarray) -> int:  # fmt: skip
    """Start ``slots`` from zero states and run their ring buffers through ``runtime``; the
    samples run. (A state kept for other weights is worth nothing to these.)"""
    return catch_up(runtime, None, Rings(ring, seen, np.asarray(slots), np.zeros(0, bool)))


def catch_up(runtime: StreamRuntime | Decoded, before: Rings | None, now: Rings) -> int:
    """Advance ``runtime`` from the state it had at ``before`` to ``now``; return the samples run.

    Slots reset in between (and every slot when ``before`` is None) start from zero and replay
    their whole ring; the others replay the samples that arrived since ``before``.
    """
    ring_len = now.ring.shape[1]
    slots = now.used[now.seen[now.used] > 0]
    if before is None:
        full = np.ones(len(slots), bool)
        delta = now.seen[slots]
    else:
        known = slots < len(before.seen)
        earlier = before.seen[np.minimum(slots, len(before.seen) - 1)]
        delta = now.seen[slots] - np.where(known, earlier, 0)
        fresh = np.zeros(len(now.seen), bool)
        fresh[: len(now.fresh)] = now.fresh[: len(now.seen)]
        full = ~known | fresh[slots] | (delta < 0) | (delta > ring_len)
    counts = np.where(full, np.minimum(now.seen[slots], ring_len), delta)
    if full.any():
        runtime.reset(slots[full])
    keep = counts > 0
    slots, counts = slots[keep], counts[keep]
    if not len(slots):
        return 0
    owner = np.repeat(slots, counts)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    index = (now.seen[owner] - np.repeat(counts, counts) + within) % ring_len
    runtime.advance(slots, counts, now.ring[owner, index])
    return int(counts.sum())
