"""``[worker] delay_ms``: each sample's label emitted ``delay_ms`` late, from the stream model's
probabilities up to ``delay_ms`` after it (:mod:`models.smoothing`): the fixed-lag HMM smoother
where the model's grammar has a lag temperature (it did better on the validation users), else
the centred mean of the (decoded) probabilities; for a model with a refiner of that lag
(:mod:`models.refine`), the mean of the smoother's and the refiner's probabilities.

A device's samples go in as they arrive; out come the samples ``lag`` behind, as runs the
emission path takes like undelayed ones: each names the input sample it labels (its sequence
number, event time and label), so a prediction is as late as the delay and no later. What a
device still holds back when its stream ends (a gap, an eviction) is emitted then, with the
window cut short; nothing is lost, and nothing is emitted twice. A hot swap keeps what is held:
the labels around it smooth over the old and the new model's probabilities (a new model with
other classes, or the other way of smoothing, lets out what the old one held first).

The smoother's forward belief is the ``alpha`` of each device's newest held row: checkpoints
keep the held rows and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from models.hmm import ForwardFilter, Grammar
from models.smoothing import FixedLag, Posterior, lag_samples
from pipeline.exceptions import ConfigError
from pipeline.worker.sequencer import DeviceRun

EXTRA = 4
"""columns a sample carries beside its probabilities: sequence number, event time, label, and
the next-step error (NaN without a next-step head)"""


class Delayed(NamedTuple):
    """The samples a batch emits after the delay: one run per device with any, its slot, how
    many, and their smoothed probabilities and next-step errors (rows run after run)."""

    runs: list[DeviceRun]
    index: np.ndarray
    """each run's place among the runs pushed (or flushed)"""
    slots: np.ndarray
    counts: np.ndarray
    probs: np.ndarray
    anomaly: np.ndarray | None


class Delay:
    """The fixed-lag smoother of a worker's stream model: ``delay_ms`` at ``rate_hz`` is
    ``lag`` samples (at least one), for ``classes`` probabilities per sample; the HMM smoother
    of ``grammar`` if it has a lag temperature, else the centred mean."""

    def __init__(self, delay_ms: float, rate_hz: float, classes: int, capacity: int = 1024,
                 grammar: Grammar | None = None) -> None:  # fmt: skip
        if delay_ms <= 0:
            raise ConfigError(f"delay_ms must be > 0 to delay labels, not {delay_ms}")
        self.lag = lag_samples(delay_ms, rate_hz)
        self.delay_ms = self.lag * 1000.0 / rate_hz
        """the delay applied: ``lag`` samples at the model's rate"""
        self.classes = classes
        self.filter: ForwardFilter | None = None
        """the HMM smoother's forward filter (None: the centred mean)"""
        smoothed, reduce = classes, None
        if (temperature := self._temperature(grammar)) is not None:
            self.filter = grammar.decoder(capacity, temperature)
            smoothed, reduce = 2 * classes, Posterior(grammar.transitions)
        self.smoother = FixedLag(self.lag, smoothed + EXTRA, smoothed, capacity, np.float32,
                                 reduce)  # fmt: skip

    def _temperature(self, grammar: Grammar | None) -> float | None:
        """The HMM smoother's temperature of ``grammar`` at this delay (None: the mean)."""
        return grammar.lag_temperature(self.delay_ms) if grammar is not None else None

    def fits(self, classes: int, grammar: Grammar | None) -> bool:
        """Whether a model of ``classes`` with ``grammar`` can take over what this holds (the
        same classes, smoothed the same way)."""
        hmm = self._temperature(grammar) is not None
        return classes == self.classes and hmm == (self.filter is not None)

    def use(self, grammar: Grammar | None) -> None:
        """Smooth with ``grammar`` from now on (a hot swap; :meth:`fits` it): the beliefs and
        held rows stay."""
        if self.filter is not None and (temperature := self._temperature(grammar)) is not None:
            beliefs = self.filter.belief
            self.filter = grammar.decoder(self.filter.capacity, temperature)
            self.filter.belief = beliefs
            self.smoother.reduce = Posterior(grammar.transitions)

    def ensure_capacity(self, capacity: int) -> None:
        self.smoother.ensure_capacity(capacity)
        if self.filter is not None:
            self.filter.ensure_capacity(capacity)

    def reset(self, slots) -> None:
        self.smoother.reset(slots)
        if self.filter is not None:
            self.filter.reset(slots)

    def pending(self, slots) -> np.ndarray:
        return self.smoother.pending(slots)

    def push(self, runs: Sequence[DeviceRun], slots, counts, probs, anomaly,
             refined: np.ndarray | None = None) -> Delayed:  # fmt: skip
        """A batch's new samples (``runs`` at the model's rate, their probabilities and
        next-step errors run after run) in; the samples ``lag`` behind them out. ``refined``:
        a refiner's output for each new sample (:mod:`models.refiner_runtime`, the same lag),
        averaged with the smoother's for the sample it labels."""
        k, s = self.classes, self.smoother.smoothed
        rows = np.empty((len(probs), s + EXTRA))
        if self.filter is None:
            rows[:, :k] = probs
        else:  # alpha and the likelihood, as float32 as the rows held
            rows[:, :k] = self.filter.filter(slots, counts, probs)
            rows[:, k:s] = self.filter.likelihood(probs).astype(np.float32)
        rows[:, s] = np.concatenate([r.seqs for r in runs])
        rows[:, s + 1] = np.concatenate([r.times_ms for r in runs])
        rows[:, s + 2] = np.concatenate([r.labels for r in runs])
        rows[:, s + 3] = np.nan if anomaly is None else anomaly
        out, emitted = self.smoother.push(slots, counts, rows)
        return self._runs(runs, np.asarray(slots), out, emitted, anomaly is not None,
                          _mine(refined, counts, emitted))  # fmt: skip

    def flush(self, devices: Sequence[DeviceRun], slots, refined: np.ndarray | None = None
              ) -> Delayed:  # fmt: skip
        """What ``slots`` hold back, emitted now (their streams ended); ``devices``: a run
        per slot naming its device and partition (no samples needed). ``refined``: the
        refiner's ``lag`` last outputs per slot (:meth:`RefinerRuntime.flush`)."""
        out, emitted = self.smoother.flush(slots)
        if self.filter is not None:
            self.filter.reset(slots)
        has_anomaly = bool(len(out)) and not np.isnan(out[:, -1]).all()
        lags = np.full(len(emitted), self.lag)
        return self._runs(devices, np.asarray(slots), out, emitted, has_anomaly,
                          _mine(refined, lags, emitted))  # fmt: skip

    def _runs(self, runs, slots, out, emitted, has_anomaly: bool, refined) -> Delayed:
        k, s = self.classes, self.smoother.smoothed
        emitting = np.flatnonzero(emitted)
        ends = np.cumsum(emitted)
        delayed = []
        for i in emitting.tolist():
            part, run = out[ends[i] - emitted[i] : ends[i]], runs[i]
            delayed.append(DeviceRun(
                run.device, part[:, s].astype(np.int64), np.zeros((len(part), 0), np.float32),
                part[:, s + 2].astype(np.int64), part[:, s + 1].copy(),
                kafka_ts_ms=run.kafka_ts_ms, partition=run.partition, offset=run.offset,
                rate_hz=run.rate_hz,
            ))  # fmt: skip
        anomaly = out[:, s + 3].astype(np.float32) if has_anomaly else None
        probs = out[:, :k].astype(np.float32)
        if refined is not None:
            probs = (refined + probs) / 2
        return Delayed(delayed, emitting, slots[emitting], emitted[emitting], probs, anomaly)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot(self, slots) -> list[np.ndarray]:
        """Each slot's held samples ``(held, classes + 4)`` (``2 classes + 4`` for the HMM
        smoother: alpha, likelihood), float64, oldest first."""
        return [self.smoother.get_state(s) for s in np.asarray(slots).tolist()]

    def restore(self, slots, held: Sequence[np.ndarray | None]) -> None:
        """Put back what :meth:`snapshot` gave (``None``, or another width: nothing); the
        HMM smoother's belief is the newest row's alpha."""
        for slot, rows in zip(np.asarray(slots).tolist(), held, strict=True):
            self.reset([slot])
            if rows is not None and rows.size and rows.shape[-1] == self.smoother.width:
                self.smoother.set_state(slot, rows)
                if self.filter is not None:
                    newest = rows.reshape(-1, self.smoother.width)[-1]
                    self.filter.set_state(slot, newest[: self.classes])


def _mine(refined: np.ndarray | None, counts, emitted: np.ndarray) -> np.ndarray | None:
    """Of a refiner's outputs (``counts[i]`` rows per run, run after run), those labelling the
    samples emitted: each run's last ``emitted[i]`` (the output of its ``j``-th new sample
    labels the sample ``lag`` before it)."""
    if refined is None:
        return None
    ends = np.cumsum(np.asarray(counts, np.int64))
    within = np.arange(int(emitted.sum())) - np.repeat(np.cumsum(emitted) - emitted, emitted)
    return refined[np.repeat(ends - emitted, emitted) + within]
