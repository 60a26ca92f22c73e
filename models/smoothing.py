"""Fixed-lag smoothing: a sample's label from the probabilities of the ``lag`` samples on either
side of it, known ``lag`` samples after it arrived.

A user who can wait ``lag`` samples for each label gets the mean of the (decoded) per-sample
probabilities over the ``2 lag + 1`` samples centred on it: a causal moving average whose
output names the sample ``lag`` back. Near a recording's start and end the window is cut short
(the mean of what there is). :func:`centred` does it for whole recordings (the report, the
offline evaluation); :class:`FixedLag` does the same online, one history per device, vectorised
across devices, and hands each emitted sample's own extra columns (its sequence number, event
time, ...) back with it.

>>> centred(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), lag=1).round(2).tolist()
[[0.5, 0.5], [0.33, 0.67], [0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.exceptions import ModelsError
from models.hmm import Grammar


def lag_samples(delay_ms: float, rate_hz: float) -> int:
    """A delay in samples at ``rate_hz``: ``delay_ms`` rounded, at least one sample."""
    if delay_ms <= 0 or rate_hz <= 0:
        raise ModelsError(f"a delay is > 0 ms at a rate > 0 Hz, not {delay_ms} ms at {rate_hz} Hz")
    return max(1, round(delay_ms * rate_hz / 1000.0))


def centred(probs: np.ndarray, lag: int) -> np.ndarray:
    """Row ``t`` of ``probs`` (a recording's ``(T, K)``) replaced by the mean of rows
    ``max(0, t - lag) .. min(T - 1, t + lag)``."""
    if lag < 0:
        raise ModelsError(f"a lag is >= 0 samples, not {lag}")
    probs = np.asarray(probs, np.float64)
    if lag == 0 or not len(probs):
        return probs.copy()
    c = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
    t = np.arange(len(probs))
    lo, hi = np.maximum(t - lag, 0), np.minimum(t + lag + 1, len(probs))
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def as_served(
    probs: Sequence[np.ndarray], grammar: Grammar | None, delay_ms: float = 0.0,
    rate_hz: float = 50.0,
) -> list[np.ndarray]:  # fmt: skip
    """What a worker emits for whole recordings, offline: each recording's per-sample
    probabilities (the model's, from its start) decoded by ``grammar`` where it is enabled,
    then, with ``delay_ms``, the :func:`centred` mean over that delay at ``rate_hz``."""
    probs = [np.asarray(p, np.float32) for p in probs]
    if grammar is not None and grammar.enabled and probs:
        counts = [len(p) for p in probs]
        decoded = grammar.decoder(len(probs)).filter(np.arange(len(probs)), counts,
                                                     np.concatenate(probs))  # fmt: skip
        probs = np.split(decoded, np.cumsum(counts)[:-1])
    if delay_ms > 0:
        lag = lag_samples(delay_ms, rate_hz)
        probs = [centred(p, lag) for p in probs]
    return list(probs)


class FixedLag:
    """:func:`centred` online for up to ``capacity`` devices (slots): rows of ``width`` values
    arrive per device; the first ``smoothed`` columns are averaged, the others are the emitted
    sample's own. Each slot holds its last ``2 lag`` rows (oldest first), as ``get_state`` and
    ``set_state`` hand them to checkpoints.

    >>> f = FixedLag(lag=1, width=2, smoothed=1, capacity=1)
    >>> out, n = f.push([0], [2], np.array([[1.0, 10], [0.0, 11]]))
    >>> out.tolist(), n.tolist()  # the first sample, once the one after it is there
    ([[0.5, 10.0]], [1])
    >>> out, n = f.flush([0])
    >>> out.tolist(), n.tolist()  # the last, with the window cut short
    ([[0.5, 11.0]], [1])
    """

    def __init__(self, lag: int, width: int, smoothed: int | None = None, capacity: int = 1024):
        if lag < 1:
            raise ModelsError(f"a fixed-lag smoother needs lag >= 1 sample, not {lag}")
        self.lag, self.width = int(lag), int(width)
        self.smoothed = self.width if smoothed is None else int(smoothed)
        if not 0 < self.smoothed <= self.width:
            raise ModelsError(f"smoothed columns must be 1..{width}, not {smoothed}")
        self.rows = np.zeros((max(1, capacity), 2 * self.lag, self.width))
        self.held = np.zeros(max(1, capacity), np.int64)
        """rows each slot holds (its stream's last ``min(seen, 2 lag)``)"""

    @property
    def capacity(self) -> int:
        return len(self.held)

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > self.capacity:
            more = max(capacity, 2 * self.capacity) - self.capacity
            self.rows = np.concatenate([self.rows, np.zeros((more, *self.rows.shape[1:]))])
            self.held = np.concatenate([self.held, np.zeros(more, np.int64)])

    def reset(self, slots) -> None:
        """Forget ``slots``' rows (call :meth:`flush` first to emit what they still hold)."""
        self.held[np.asarray(slots, np.int64)] = 0

    def pending(self, slots) -> np.ndarray:
        """Samples of each slot that arrived but were not emitted yet (at most ``lag``)."""
        return np.minimum(self.held[np.asarray(slots, np.int64)], self.lag)

    def get_state(self, slot: int) -> np.ndarray:
        """``(held, width)``: the rows ``slot`` holds, oldest first."""
        return self.rows[slot, : self.held[slot]].copy()

    def set_state(self, slot: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64).reshape(-1, self.width)[-2 * self.lag :]
        self.rows[slot, : len(rows)], self.held[slot] = rows, len(rows)

    def push(self, slots, counts, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Device ``slots[i]`` brings ``counts[i]`` rows (``rows`` run after run; a slot at most
        once). The emitted samples ``(E, width)``, run after run, each ``lag`` samples behind
        an arrival, and how many each slot emitted."""
        slots, counts = np.asarray(slots, np.int64), np.asarray(counts, np.int64)
        stack, seg, held, m = self._stack(slots, counts, np.asarray(rows, np.float64))
        lag = self.lag
        # arrivals j (local to their device) >= lag emit the sample j - lag, window j-2lag..j
        owner = np.repeat(np.arange(len(slots)), counts)
        j = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts) + held[owner]
        emit = j >= lag
        out = self._windows(stack, seg[owner[emit]], j[emit] - lag, j[emit])
        self._keep(slots, stack, seg, m)
        return out, np.bincount(owner[emit], minlength=len(slots))

    def flush(self, slots) -> tuple[np.ndarray, np.ndarray]:
        """What ``slots`` still hold back, emitted now with their windows cut short (a stream's
        end), run after run; how many each slot emitted. The slots start afresh."""
        slots = np.asarray(slots, np.int64)
        held, pending = self.held[slots], self.pending(slots)
        owner = np.repeat(np.arange(len(slots)), pending)
        e = np.arange(len(owner)) - np.repeat(np.cumsum(pending) - pending, pending)
        e += np.repeat(held - pending, pending)  # the pending samples' rows
        stack = self.rows[slots].reshape(-1, self.width)
        seg = np.arange(len(slots)) * 2 * self.lag
        out = self._windows(stack, seg[owner], e, held[owner] - 1)
        self.reset(slots)
        return out, pending

    def _stack(self, slots, counts, rows):
        """Each slot's held rows followed by its new ones, slot after slot: the stack, where
        each slot's rows start in it, its held count and its total count."""
        held = self.held[slots]
        m = held + counts
        seg = np.cumsum(m) - m
        owner = np.repeat(np.arange(len(slots)), m)
        local = np.arange(int(m.sum())) - np.repeat(seg, m)
        old = local < held[owner]
        stack = np.empty((len(owner), self.width))
        stack[old] = self.rows[slots[owner[old]], local[old]]
        stack[~old] = rows
        return stack, seg, held, m

    def _windows(self, stack, seg, e, last) -> np.ndarray:
        """For each emitted sample (row ``seg + e`` of ``stack``): the mean of the smoothed
        columns over rows ``max(0, e - lag) .. last`` of its slot, and its own other columns."""
        s = self.smoothed
        c = np.concatenate([np.zeros((1, s)), np.cumsum(stack[:, :s], axis=0)])
        lo, hi = seg + np.maximum(e - self.lag, 0), seg + last + 1
        out = stack[seg + e].copy()
        out[:, :s] = (c[hi] - c[lo]) / (hi - lo)[:, None]
        return out

    def _keep(self, slots, stack, seg, m) -> None:
        """Each slot keeps the last ``2 lag`` rows of its part of the stack."""
        keep_n = np.minimum(m, 2 * self.lag)
        owner = np.repeat(np.arange(len(slots)), keep_n)
        dest = np.arange(len(owner)) - np.repeat(np.cumsum(keep_n) - keep_n, keep_n)
        src = np.repeat(seg + m - keep_n, keep_n) + dest
        self.rows[slots[owner], dest] = stack[src]
        self.held[slots] = keep_n
