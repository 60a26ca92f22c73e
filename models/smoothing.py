"""Fixed-lag smoothing: a sample's label from the probabilities of the samples up to ``lag``
after it, known ``lag`` samples after it arrived. Two ways:

- **the centred mean**: the mean of the (decoded) per-sample probabilities over the
  ``2 lag + 1`` samples centred on the sample, a causal moving average whose output names the
  sample ``lag`` back;
- **the fixed-lag HMM smoother**, for a model whose grammar has a lag temperature for the
  delay (it beat the centred mean on the validation users, :func:`fit_lag`): the posterior of
  the sample's class given everything up to ``lag`` after it, ``alpha_t * beta_t``, the
  forward filter's belief at ``t`` (:mod:`models.hmm`, at the lag temperature) times the
  backward pass over the ``lag`` samples after it. It knows that sitting becomes standing
  only through stand-up, and uses the posture after a transition to name it. ``O(lag K²)``
  per sample for ``K`` classes.

Near a recording's start and end the window is cut short (what there is).
:func:`centred` and :func:`hmm_lag` do it for whole recordings, :func:`as_served` as a worker
serves a model (the report, the offline evaluation); :class:`FixedLag` does either online, one
history per device, vectorised across devices, and hands each emitted sample's own extra
columns (its sequence number, event time, ...) back with it.

>>> centred(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), lag=1).round(2).tolist()
[[0.5, 0.5], [0.33, 0.67], [0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from models.evaluation import evaluate
from models.exceptions import ModelsError
from models.hmm import Grammar

LAG_TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5)
"""the temperatures :func:`fit_lag` tries for the fixed-lag HMM smoother: lower than the causal
filter's, the lower the longer the lag (on HAPT: about 0.1 for 1 s, 0.03 for 2 s)"""
FIT_DELAYS_MS = (500.0, 1000.0, 2000.0)
"""the delays :func:`fit_lag` measures the smoother at on the validation users (a worker uses
the temperature of the one nearest its delay)"""

Reduce = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(stack, lo, at, hi) -> (E, columns)``: emitted sample ``i`` is row ``at[i]`` of ``stack``,
with the rows ``lo[i] .. hi[i] - 1`` around it (``lo <= at < hi``)"""


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


def hmm_lag(
    probs: Sequence[np.ndarray], grammar: Grammar, temperature: float, lag: int
) -> list[np.ndarray]:
    """The fixed-lag HMM smoother of ``grammar`` at ``temperature`` over whole recordings
    (``probs``: each one's per-sample probabilities, from its start): each sample's posterior
    given the samples up to ``lag`` after it."""
    if not probs:
        return []
    return _smoothed(*_filtered(probs, grammar, temperature), grammar, lag)


def _filtered(
    probs: Sequence[np.ndarray], grammar: Grammar, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every recording's rows ``[alpha, likelihood]`` (float32, as a worker holds them), one
    after the other, and how many each has: the forward pass, shared by every lag."""
    counts = np.array([len(p) for p in probs])
    rows = np.concatenate([np.asarray(p, np.float32) for p in probs])
    f = grammar.decoder(len(probs), temperature)
    stack = np.concatenate([f.filter(np.arange(len(probs)), counts, rows),
                            f.likelihood(rows).astype(np.float32)], axis=1)  # fmt: skip
    return stack, counts


def _smoothed(stack: np.ndarray, counts: np.ndarray, grammar: Grammar, lag: int) -> list:
    """:func:`_filtered`'s rows smoothed over ``lag``, split into the recordings. Each
    recording is followed by ``lag`` rows that weigh nothing (likelihood 1: ``A @ 1 = 1``), so
    that every step of the backward pass is one slice of them all."""
    k = len(grammar.prior)
    starts = np.cumsum(counts) - counts + np.arange(len(counts)) * lag  # in the padded rows
    padded = np.ones((int(counts.sum()) + len(counts) * lag + lag, k), np.float32)
    real = np.concatenate([np.arange(n) + s for n, s in zip(counts, starts, strict=True)])
    padded[real] = stack[:, k:]
    m = len(padded) - lag
    beta = _beta(lambda d: padded[d : d + m], m, lag, grammar.transitions)[real]
    post = stack[:, :k] * beta
    post /= post.sum(axis=1, keepdims=True)
    return np.split(post, np.cumsum(counts)[:-1])


RESCALE = 4
"""steps of the backward pass between two normalisations (each step scales beta by at most a
likelihood, far from float32's range in a few)"""


def _beta(like_at: Callable[[int], np.ndarray], n: int, steps: int, transitions) -> np.ndarray:
    """The backward pass of ``n`` samples over ``steps`` after each, from the newest back:
    ``like_at(d)`` gives the ``(n, K)`` likelihoods of the samples ``d`` after them (float32);
    beta up to scale, in float32: these narrow products take a third of float64's time, and
    the posteriors stay within 4e-6 of float64's (HAPT test recordings at 2 s: no label
    changed)."""
    back = np.ascontiguousarray(np.asarray(transitions, np.float32).T)
    beta = np.ones((n, len(back)), np.float32)
    for d in range(steps, 0, -1):
        beta = np.multiply(like_at(d), beta, out=beta) @ back
        if d % RESCALE == 0:
            beta /= beta.sum(axis=1, keepdims=True)
    return beta


class Posterior:
    """The fixed-lag HMM smoother as a :data:`Reduce` over rows ``[alpha, likelihood]`` (each
    ``K`` wide: the forward filter's belief at that sample and the sample's weighed model
    probabilities): ``alpha_at * beta``, beta the backward pass over rows ``at + 1 .. hi - 1``,
    normalised; ``(E, 2 K)``, the posterior then the emitted row's likelihood."""

    def __init__(self, transitions) -> None:
        self.transitions = np.asarray(transitions, np.float64)

    def __call__(self, stack, lo, at, hi) -> np.ndarray:
        k = len(self.transitions)
        span = hi - at - 1
        shortest, last = int(span.min(initial=0)), len(stack) - 1
        likes = stack[:, k:].astype(np.float32)  # one contiguous copy, gathered from each step

        def like_at(d: int) -> np.ndarray:
            if d <= shortest:  # every window reaches this far (always so in a push)
                return np.take(likes[d:], at, axis=0)  # no index arithmetic per step
            like = np.take(likes, np.minimum(at + d, last), axis=0)
            return np.where((span >= d)[:, None], like, 1.0)  # past its end: A @ 1 = 1

        beta = _beta(like_at, len(at), int(span.max(initial=0)), self.transitions)
        out = np.empty((len(at), 2 * k))
        post = stack[at, :k] * beta
        out[:, :k] = post / post.sum(axis=1, keepdims=True)
        out[:, k:] = stack[at, k:]
        return out


def fit_lag(
    grammar: Grammar, val_probs: Sequence[np.ndarray], val_labels: Sequence[np.ndarray],
    classes: Sequence[str], rate_hz: float, delays_ms: Sequence[float] = FIT_DELAYS_MS,
) -> Grammar:  # fmt: skip
    """``grammar`` with its ``lags``: for each of ``delays_ms``, the one of
    :data:`LAG_TEMPERATURES` whose fixed-lag smoother labels the validation recordings
    (``val_probs``, each from its start) best, if it beats what a worker serves without one
    (:func:`as_served`: the centred mean, over decoded probabilities where the grammar is
    enabled), else None. Without validation recordings: none (no evidence that it helps)."""
    if not len(val_probs):
        return replace(grammar, lags=())
    y = np.concatenate(val_labels)
    plain_grammar = replace(grammar, lags=())

    def f1(served: Sequence[np.ndarray]) -> float:
        return evaluate(y, np.concatenate([p.argmax(-1) for p in served]), classes).macro_f1

    scored: dict[float, list[tuple[float, float]]] = {ms: [] for ms in delays_ms}
    for t in LAG_TEMPERATURES:  # one forward pass per temperature, for every delay
        stack, counts = _filtered(val_probs, grammar, t)
        for ms in delays_ms:
            smoothed = _smoothed(stack, counts, grammar, lag_samples(ms, rate_hz))
            scored[ms].append((f1(smoothed), t))
    lags = []
    for ms in delays_ms:
        plain = f1(as_served(val_probs, plain_grammar, ms, rate_hz))
        best, t = max(scored[ms])
        lags.append((float(ms), t if best > plain else None, plain, best))
    return replace(grammar, lags=tuple(lags))


def as_served(
    probs: Sequence[np.ndarray], grammar: Grammar | None, delay_ms: float = 0.0,
    rate_hz: float = 50.0,
) -> list[np.ndarray]:  # fmt: skip
    """What a worker emits for whole recordings, offline: each recording's per-sample
    probabilities (the model's, from its start); with ``delay_ms``, smoothed over that delay
    at ``rate_hz`` by the fixed-lag HMM smoother if the grammar has a lag temperature for it
    (on the model's probabilities), else decoded by ``grammar`` where it is enabled and then
    the :func:`centred` mean; without, decoded by ``grammar`` where it is enabled."""
    probs = [np.asarray(p, np.float32) for p in probs]
    temperature = grammar.lag_temperature(delay_ms) if grammar is not None else None
    if temperature is not None:
        return hmm_lag(probs, grammar, temperature, lag_samples(delay_ms, rate_hz))
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
    sample's own. Each slot holds the smoothed columns of its last ``2 lag`` rows and the other
    columns of its last ``lag`` (those not emitted yet), oldest first; ``get_state`` and
    ``set_state`` hand them to checkpoints as rows. ``dtype``: how the smoothed columns are
    kept (float32 for float32 probabilities: the same values, half the memory); the means are
    taken in float64. ``reduce``: how an emitted sample's smoothed columns come from the rows
    around it (default: the mean of rows ``t - lag .. t + lag``; :class:`Posterior`: the
    fixed-lag HMM smoother).

    >>> f = FixedLag(lag=1, width=2, smoothed=1, capacity=1)
    >>> out, n = f.push([0], [2], np.array([[1.0, 10], [0.0, 11]]))
    >>> out.tolist(), n.tolist()  # the first sample, once the one after it is there
    ([[0.5, 10.0]], [1])
    >>> out, n = f.flush([0])
    >>> out.tolist(), n.tolist()  # the last, with the window cut short
    ([[0.5, 11.0]], [1])
    """

    def __init__(self, lag: int, width: int, smoothed: int | None = None, capacity: int = 1024,
                 dtype: type = np.float64, reduce: Reduce | None = None) -> None:  # fmt: skip
        if lag < 1:
            raise ModelsError(f"a fixed-lag smoother needs lag >= 1 sample, not {lag}")
        self.lag, self.width = int(lag), int(width)
        self.smoothed = self.width if smoothed is None else int(smoothed)
        if not 0 < self.smoothed <= self.width:
            raise ModelsError(f"smoothed columns must be 1..{width}, not {smoothed}")
        n = max(1, capacity)
        self.smooth = np.zeros((n, 2 * self.lag, self.smoothed), dtype)
        self.extra = np.zeros((n, self.lag, self.width - self.smoothed))
        self.held = np.zeros(n, np.int64)
        """rows each slot holds (its stream's last ``min(seen, 2 lag)``)"""
        self.reduce: Reduce = reduce or (lambda stack, lo, at, hi: _means(stack, lo, hi))

    @property
    def capacity(self) -> int:
        return len(self.held)

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > self.capacity:
            more = max(capacity, 2 * self.capacity) - self.capacity
            grow = lambda a: np.concatenate([a, np.zeros((more, *a.shape[1:]), a.dtype)])  # noqa: E731
            self.smooth, self.extra, self.held = map(grow, (self.smooth, self.extra, self.held))

    def reset(self, slots) -> None:
        """Forget ``slots``' rows (call :meth:`flush` first to emit what they still hold)."""
        self.held[np.asarray(slots, np.int64)] = 0

    def pending(self, slots) -> np.ndarray:
        """Samples of each slot that arrived but were not emitted yet (at most ``lag``)."""
        return np.minimum(self.held[np.asarray(slots, np.int64)], self.lag)

    def get_state(self, slot: int) -> np.ndarray:
        """``(held, width)``: the rows ``slot`` holds, oldest first (the other columns of the
        rows emitted already are not kept: 0)."""
        held, pending = self.held[slot], min(self.held[slot], self.lag)
        rows = np.zeros((held, self.width))
        rows[:, : self.smoothed] = self.smooth[slot, :held]
        rows[held - pending :, self.smoothed :] = self.extra[slot, :pending]
        return rows

    def set_state(self, slot: int, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64).reshape(-1, self.width)[-2 * self.lag :]
        held, pending = len(rows), min(len(rows), self.lag)
        self.smooth[slot, :held] = rows[:, : self.smoothed]
        self.extra[slot, :pending] = rows[held - pending :, self.smoothed :]
        self.held[slot] = held

    def push(self, slots, counts, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Device ``slots[i]`` brings ``counts[i]`` rows (``rows`` run after run; a slot at most
        once). The emitted samples ``(E, width)``, run after run, each ``lag`` samples behind
        an arrival, and how many each slot emitted."""
        slots, counts = np.asarray(slots, np.int64), np.asarray(counts, np.int64)
        rows, s, lag = np.asarray(rows, np.float64), self.smoothed, self.lag
        held = self.held[slots]
        m = held + counts
        seg = np.cumsum(m) - m  # where each slot's held rows, then its new ones, start
        owner = np.repeat(np.arange(len(slots)), m)
        local = np.arange(int(m.sum())) - np.repeat(seg, m)
        old = local < held[owner]
        stack = np.empty((len(owner), s))
        stack[old] = self.smooth.reshape(-1, s)[slots[owner[old]] * 2 * lag + local[old]]
        stack[~old] = rows[:, :s]
        # arrivals j (local to their device) >= lag emit the sample j - lag, window j-2lag..j
        first = np.cumsum(counts) - counts  # each slot's first new row in ``rows``
        arrived = np.repeat(np.arange(len(slots)), counts)
        j = np.arange(len(arrived)) - np.repeat(first, counts) + held[arrived]
        emit = j >= lag
        by, e = arrived[emit], j[emit] - lag
        out = np.empty((len(by), self.width))
        out[:, :s] = self.reduce(stack, seg[by] + np.maximum(e - lag, 0), seg[by] + e,
                                 seg[by] + e + lag + 1)  # fmt: skip
        out[:, s:] = self._other(slots, rows, first, held, by, e)
        self._keep(slots, rows, first, held, stack, seg, m)
        return out, np.bincount(by, minlength=len(slots))

    def flush(self, slots) -> tuple[np.ndarray, np.ndarray]:
        """What ``slots`` still hold back, emitted now with their windows cut short (a stream's
        end), run after run; how many each slot emitted. The slots start afresh."""
        slots = np.asarray(slots, np.int64)
        held, pending = self.held[slots], self.pending(slots)
        owner = np.repeat(np.arange(len(slots)), pending)
        within = np.arange(len(owner)) - np.repeat(np.cumsum(pending) - pending, pending)
        e = within + np.repeat(held - pending, pending)  # the pending samples' rows
        stack = self.smooth[slots].reshape(-1, self.smoothed)
        seg = np.arange(len(slots)) * 2 * self.lag
        out = np.empty((len(owner), self.width))
        out[:, : self.smoothed] = self.reduce(stack, seg[owner] + np.maximum(e - self.lag, 0),
                                              seg[owner] + e, seg[owner] + held[owner])  # fmt: skip
        out[:, self.smoothed :] = self.extra[slots[owner], within]
        self.reset(slots)
        return out, pending

    def _other(self, slots, rows, first, held, by, e) -> np.ndarray:
        """The other columns of the samples ``e`` (local to slot ``slots[by]``): kept for those
        held, in ``rows`` for the new ones."""
        s, lag = self.smoothed, self.lag
        out = np.empty((len(by), self.width - s))
        if not out.size:
            return out
        kept = e < held[by]
        b, k = by[kept], e[kept]
        out[kept] = self.extra.reshape(-1, self.width - s)[
            slots[b] * lag + k - held[b] + np.minimum(held[b], lag)
        ]
        b, k = by[~kept], e[~kept]
        out[~kept] = rows[first[b] + k - held[b], s:]
        return out

    def _keep(self, slots, rows, first, held, stack, seg, m) -> None:
        """Each slot keeps the smoothed columns of its last ``2 lag`` rows (from ``stack``) and
        the other columns of its last ``lag``."""
        for columns, span in ((self.smooth, 2 * self.lag), (self.extra, self.lag)):
            keep_n = np.minimum(m, span)
            owner = np.repeat(np.arange(len(slots)), keep_n)
            dest = np.arange(len(owner)) - np.repeat(np.cumsum(keep_n) - keep_n, keep_n)
            local = np.repeat(m - keep_n, keep_n) + dest
            if columns is self.smooth:
                values = stack[seg[owner] + local]
            else:
                values = self._other(slots, rows, first, held, owner, local)
            columns[slots[owner], dest] = values
        self.held[slots] = np.minimum(m, 2 * self.lag)


def _means(stack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The mean of rows ``lo[i] .. hi[i] - 1`` of ``stack``, in float64, for each ``i``."""
    c = np.empty((len(stack) + 1, stack.shape[1]))
    c[0] = 0.0
    np.cumsum(stack, axis=0, out=c[1:])
    out = c[hi]
    out -= c[lo]
    out /= (hi - lo)[:, None]
    return out
