"""The refiner (:mod:`models.refine`) as a worker runs it: what it reads for each sample, from
the labeller's probabilities and its causal HMM filter's beliefs, and its state per device
(:class:`RefinerRuntime`; NumPy only: no Keras here).

>>> x = log_inputs(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
>>> x.dtype, x.astype(float).round(3).tolist()
(dtype('float32'), [[-0.693, -0.693, 0.0, -13.816]])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.exceptions import ModelsError
from models.runtime import StreamRuntime

if TYPE_CHECKING:
    import keras

    from models.hmm import ForwardFilter, Grammar
    from models.spec import ModelMeta

FLOOR = 1e-6
"""probabilities and beliefs below this are read as this (their logarithm stays finite)"""


def log_inputs(probs: np.ndarray, beliefs: np.ndarray) -> np.ndarray:
    """A refiner's input rows ``(T, 2K)``: the log of the labeller's probabilities and of its
    filter's beliefs ``(T, K)`` side by side, floored at :data:`FLOOR`, float32."""
    both = np.concatenate([probs, beliefs], axis=1)
    return np.log(np.maximum(both, FLOOR)).astype(np.float32)


LAG_KEY = "refiner_lag"
"""where :func:`models.refine.fit_refiner` writes, in the refiner's provenance, how many samples
back it labels"""


class RefinerRuntime:
    """A refiner's state per device (slot), as a worker runs it beside its labeller: the
    refiner's NumPy ``runtime``, the labeller grammar's causal ``decoder`` whose beliefs it
    reads, and each device's last input: a stream that ends is flushed with it repeated ``lag``
    times, as :func:`models.refine.refined` does offline. The output of each step labels the
    sample ``lag`` before it."""

    def __init__(self, runtime: StreamRuntime, decoder: ForwardFilter, lag: int) -> None:
        k = len(decoder.prior)
        if runtime.weights.channels != 2 * k or runtime.weights.classes != k:
            raise ModelsError(f"a refiner over {k} classes reads {2 * k} inputs and names {k} "
                              f"classes, not {runtime.weights.channels} and "
                              f"{runtime.weights.classes}")  # fmt: skip
        if lag < 1:
            raise ModelsError(f"a refiner's lag is >= 1 sample, not {lag}")
        self.runtime, self.decoder, self.lag = runtime, decoder, int(lag)
        self.last = np.zeros((runtime.capacity, 2 * k), np.float32)

    @classmethod
    def from_keras(cls, model: keras.Model, meta: ModelMeta, grammar: Grammar,
                   capacity: int = 1024) -> RefinerRuntime:  # fmt: skip
        """The refiner ``model`` (its ``meta`` names its lag, :data:`LAG_KEY`) over a labeller
        whose grammar is ``grammar``, all slots fresh."""
        if LAG_KEY not in meta.provenance:
            raise ModelsError(f"not a refiner: its metadata has no {LAG_KEY}")
        return cls(StreamRuntime.from_keras(model, meta, capacity), grammar.decoder(capacity),
                   int(meta.provenance[LAG_KEY]))  # fmt: skip

    @property
    def capacity(self) -> int:
        return self.runtime.capacity

    def ensure_capacity(self, capacity: int) -> None:
        self.runtime.ensure_capacity(capacity)
        self.decoder.ensure_capacity(capacity)
        if capacity > len(self.last):
            grown = np.zeros((self.runtime.capacity, self.last.shape[1]), np.float32)
            grown[: len(self.last)] = self.last
            self.last = grown

    def reset(self, slots) -> None:
        """``slots`` start afresh (a new device, a gap, an ended stream)."""
        self.runtime.reset(slots)
        self.decoder.reset(slots)
        self.last[np.asarray(slots, np.int64)] = 0.0

    def advance(
        self, slots, counts, probs: np.ndarray, beliefs: np.ndarray | None = None
    ) -> np.ndarray:
        """Each device's new samples in (``slots[i]`` brings ``counts[i]`` rows of the
        labeller's ``probs``, run after run); out, per new sample, the refiner's probabilities
        of the sample ``lag`` before it ``(N, classes)``. ``beliefs``: the output of a filter of
        the same grammar over the same ``probs``, from the same beliefs, where the caller ran
        one (a worker that decodes): read instead of filtering twice, the refiner's filter
        only set to each device's last belief (what it would have reached)."""
        slots, counts = np.asarray(slots, np.int64), np.asarray(counts, np.int64)
        some = counts > 0
        ends = np.cumsum(counts)[some] - 1
        if beliefs is None:
            beliefs = self.decoder.filter(slots, counts, probs)
        else:
            self.decoder.belief[slots[some]] = beliefs[ends]
        x = log_inputs(probs, beliefs)
        self.last[slots[some]] = x[ends]
        return self.runtime.advance(slots, counts, x).probs

    def flush(self, slots) -> np.ndarray:
        """The refiner's last ``lag`` outputs for each of ``slots``, whose streams end (its
        last input repeated): ``(len(slots) x lag, classes)``, slot after slot, each labelling
        the sample ``lag`` before it (those a device has are its last ``lag``)."""
        slots = np.asarray(slots, np.int64)
        counts = np.full(len(slots), self.lag)
        return self.runtime.advance(slots, counts, np.repeat(self.last[slots], self.lag, 0)).probs

    # -- checkpoints --------------------------------------------------------------------------

    def get_state(self, slot: int) -> np.ndarray:
        """One slot's state as float32 values: the refiner's hidden state, the filter's belief
        and the last input."""
        parts = [a.ravel() for _, a in sorted(self.runtime.get_state(slot).items())]
        parts += [self.decoder.get_state(slot), self.last[slot]]
        return np.concatenate(parts).astype(np.float32)

    def set_state(self, slot: int, values: np.ndarray) -> bool:
        """Put back what :meth:`get_state` gave; False (the slot left fresh) for values of
        another size (another refiner's)."""
        self.reset([slot])
        shapes = sorted((key, a.shape) for key, a in self.runtime.get_state(slot).items())
        k = len(self.decoder.prior)
        sizes = [int(np.prod(shape)) for _, shape in shapes] + [k, 2 * k]
        if len(values) != sum(sizes):
            return False
        parts = np.split(np.asarray(values, np.float32), np.cumsum(sizes)[:-1])
        self.runtime.set_state(slot, {key: part.reshape(shape) for (key, shape), part
                                      in zip(shapes, parts, strict=False)})  # fmt: skip
        self.decoder.set_state(slot, parts[-2])
        self.last[slot] = parts[-1]
        return True
