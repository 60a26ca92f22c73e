"""Devices at any rate, one model rate: each device's samples resampled as they arrive.

A model is trained at one rate (50 Hz, say) and phones send at 20, 100 or 200 Hz. A record says
its rate; a run of a device at another rate than the model's is turned into samples at the
model's rate before the runtime sees it:

- positions are counted in model steps along the device's own sequence numbers (a sample at
  ``rate`` advances ``model_rate / rate`` steps, a gap of ``g`` missing samples ``g + 1`` times
  that), so jittered record timestamps cannot fold time back;
- values at whole model steps are interpolated linearly between the two input samples around
  them; the label is the one in force (of the input sample at or before the step);
- when the device is more than 1.5× faster than the model, every input sample is first
  replaced by the mean of its last ``round(rate / model_rate)`` samples (a causal boxcar
  low-pass, up to :data:`HISTORY` + 1 samples), so faster motion does not alias;
- each output step names the input sample at or before it (its sequence number; its event time
  plus the fraction of a step after it).

Everything a device carries between batches (the last input sample, the phase of the next
model step, the raw samples the low-pass needs) lives in per-slot arrays, checkpointed with the
device (:meth:`Resampler.snapshot`), so a restart or a rebalance continues the same grid. A run
at the model's rate (within 1 %) passes through untouched and ends any resampling state.
"""

from __future__ import annotations

import numpy as np

from pipeline.worker.sequencer import DeviceRun

HISTORY = 7
"""raw samples kept per device for the low-pass (so up to 8× the model's rate is filtered)"""
SLOWEST, FASTEST = 0.2, 8.0
"""the rates served, as fractions of the model's (10-400 Hz for a 50 Hz model); records at
other rates are dead letters with reason ``rate_unsupported``"""
SAME_RATE = 0.01
"""a rate within this fraction of the model's is the model's"""
ANTI_ALIAS_ABOVE = 1.5
"""low-pass when the device is more than this times faster than the model"""
_FIXED = 5
"""state vector: phase, last sequence number, last event time, last label, history length"""


class Resampler:
    """The per-device state of resampling to ``rate_hz``, for ``channels`` channels."""

    def __init__(self, rate_hz: float, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self.capacity = 0
        self.ensure_capacity(1024)

    def supports(self, rate_hz: float) -> bool:
        """Whether a device at ``rate_hz`` is served."""
        return SLOWEST * self.rate_hz <= rate_hz <= FASTEST * self.rate_hz

    def same_rate(self, rate_hz: float) -> bool:
        """Whether ``rate_hz`` is the model's (within 1 %; 0 means not known: the model's)."""
        return rate_hz <= 0 or abs(rate_hz - self.rate_hz) <= SAME_RATE * self.rate_hz

    def ensure_capacity(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        old, c = self.capacity, self.channels

        def grown(name: str, shape: tuple[int, ...], dtype, fill) -> np.ndarray:
            new = np.full((capacity, *shape), fill, dtype)
            if old:
                new[:old] = getattr(self, name)
            return new

        self.phase = grown("phase", (), np.float64, np.nan)
        """model steps from the last input sample to the next output step (NaN: not active)"""
        self.last_seq = grown("last_seq", (), np.int64, -1)
        self.last_time = grown("last_time", (), np.float64, np.nan)
        self.last_label = grown("last_label", (), np.int16, -1)
        self.last = grown("last", (c,), np.float32, 0.0)
        """the last input sample, low-passed"""
        self.history = grown("history", (HISTORY, c), np.float32, 0.0)
        """the last raw input samples, oldest first"""
        self.kept = grown("kept", (), np.int64, 0)
        """how many of ``history`` are real samples (the newest ones)"""
        self.capacity = capacity

    def reset(self, slots: np.ndarray) -> None:
        """Forget what ``slots`` carried (a new device, a reset, a run at the model's rate)."""
        self.phase[slots] = np.nan
        self.kept[slots] = 0

    def resample(
        self, runs: list[DeviceRun], slots: np.ndarray
    ) -> tuple[list[DeviceRun], np.ndarray]:
        """``runs`` at the model's rate, and their slots; runs that produced no model step yet
        are left out. Runs already at the model's rate are returned as they are."""
        other = np.array([not self.same_rate(r.rate_hz) for r in runs], bool)
        if not other.any():
            self.reset(slots)
            return runs, slots
        self.reset(slots[~other])
        which = np.flatnonzero(other)
        outputs = self._resample([runs[i] for i in which.tolist()], slots[which])
        out_runs, out_slots = list(runs), slots.copy()
        keep = np.ones(len(runs), bool)
        for i, made in zip(which.tolist(), outputs, strict=True):
            if made is None:
                keep[i] = False
            else:
                out_runs[i] = made
        if keep.all():
            return out_runs, out_slots
        return [r for r, k in zip(out_runs, keep.tolist(), strict=True) if k], out_slots[keep]

    def _resample(self, runs: list[DeviceRun], slots: np.ndarray) -> list[DeviceRun | None]:
        rate = self.rate_hz
        counts = np.array([len(r.seqs) for r in runs], np.int64)
        n_dev = len(runs)
        dev = np.repeat(np.arange(n_dev), counts)
        starts = np.cumsum(counts) - counts
        seqs = np.concatenate([r.seqs for r in runs])
        raw = np.concatenate([r.values for r in runs]).astype(np.float32, copy=False)
        labels = np.concatenate([r.labels for r in runs])
        times = np.concatenate([r.times_ms for r in runs])
        step = rate / np.array([r.rate_hz for r in runs])  # model steps per input sample

        active = ~np.isnan(self.phase[slots])
        values = self._lowpass(raw, dev, starts, counts, slots, step, active)
        # positions in model steps, relative to each device's last input sample (or, for a
        # device starting now, to its first sample, where the first output step lies)
        ref_seq = np.where(active, self.last_seq[slots], seqs[starts])
        pos = (seqs - ref_seq[dev]) * step[dev]
        phase = np.where(active, self.phase[slots], 0.0)
        end = pos[starts + counts - 1]
        m = np.maximum(0, np.floor(end - phase + 1e-9).astype(np.int64) + 1)
        out_dev = np.repeat(np.arange(n_dev), m)
        q = phase[out_dev] + (np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m))

        # the input sample at or before each output step, found by one search over all
        # devices; before a device's first input lies its last sample of the previous batch
        width = float(max(end.max(initial=0.0), q.max(initial=0.0))) + 2.0
        key = dev * width + pos
        found = np.searchsorted(key, out_dev * width + q + 1e-9, side="right") - 1
        first_in = starts[out_dev]
        carried = found < first_in  # the step lies between the last batch and this one
        left = np.maximum(found, first_in)
        right = np.where(carried, first_in, np.minimum(found + 1, (starts + counts - 1)[out_dev]))
        p_left = np.where(carried, 0.0, pos[left])
        span = pos[right] - p_left
        w = np.where(span > 0, (q - p_left) / np.where(span > 0, span, 1.0), 0.0)
        v_left = values[left]
        seq_out, label_out, t_left = seqs[left], labels[left], times[left]
        if carried.any():
            held = slots[out_dev[carried]]
            v_left[carried] = self.last[held]
            seq_out[carried], label_out[carried] = self.last_seq[held], self.last_label[held]
            t_left[carried] = self.last_time[held]
        out_values = v_left + (values[right] - v_left) * w[:, None].astype(np.float32)
        out_times = t_left + (q - p_left) * (1000.0 / rate)

        # carried to the next batch
        idx = starts + counts - 1
        self.phase[slots] = phase + m - end
        self.last_seq[slots] = seqs[idx]
        self.last_time[slots] = times[idx]
        self.last_label[slots] = labels[idx]
        self.last[slots] = values[idx]

        ends = np.cumsum(m).tolist()
        return [
            DeviceRun(r.device, seq_out[a:b], out_values[a:b], label_out[a:b], out_times[a:b],
                      r.gap_before, r.kafka_ts_ms, r.partition, r.offset, r.rate_hz)
            if b > a else None
            for r, a, b in zip(runs, [0, *ends[:-1]], ends, strict=True)
        ]  # fmt: skip

    def _lowpass(self, raw, dev, starts, counts, slots, step, active) -> np.ndarray:
        """Each input sample as the mean of its last ``round(1 / step)`` raw samples (devices
        more than 1.5× faster than the model), the raw history carried in ``self.history``."""
        n_dev = len(slots)
        span = np.where(1.0 / step > ANTI_ALIAS_ABOVE, np.minimum(np.rint(1.0 / step), HISTORY + 1),
                        1).astype(np.int64)  # fmt: skip
        kept = np.where(active, self.kept[slots], 0)
        history = self.history[slots]  # (devices, HISTORY, C), oldest first
        # the newest HISTORY samples of each device: from this batch, the rest from history
        newest = counts[:, None] - HISTORY + np.arange(HISTORY)
        from_batch = newest >= 0
        carried = np.where(from_batch, 0, newest + HISTORY)
        taken = raw[np.where(from_batch, starts[:, None] + newest, 0)]
        self.history[slots] = np.where(from_batch[..., None], taken,
                                       history[np.arange(n_dev)[:, None], carried])  # fmt: skip
        self.kept[slots] = np.minimum(HISTORY, kept + counts)
        widest = int(span.max())
        if widest == 1:
            return raw
        within = np.arange(len(raw)) - starts[dev]
        have = np.minimum(span[dev], kept[dev] + within + 1)  # the samples there are to average
        total = raw.copy()
        earlier = np.empty_like(raw)
        for back in range(1, widest):
            earlier[back:] = raw[:-back]  # the sample ``back`` before, where it is in the batch
            early = np.flatnonzero(within < back)  # ... and where it is in the history
            earlier[early] = history[dev[early], HISTORY - back + within[early]]
            total += earlier * (have > back)[:, None]
        return total / have[:, None].astype(np.float32)

    # -- checkpoints ------------------------------------------------------------------------

    def snapshot(self, slots: np.ndarray) -> list[np.ndarray | None]:
        """Each slot's carried state as one float64 vector (None: nothing carried)."""
        out: list[np.ndarray | None] = []
        for slot in np.asarray(slots, np.int64).tolist():
            if np.isnan(self.phase[slot]):
                out.append(None)
                continue
            fixed = [self.phase[slot], self.last_seq[slot], self.last_time[slot],
                     self.last_label[slot], self.kept[slot]]  # fmt: skip
            out.append(np.concatenate([np.array(fixed, np.float64), self.last[slot],
                                       self.history[slot].ravel()]).astype(np.float64))  # fmt: skip
        return out

    def restore(self, slots: np.ndarray, vectors: list[np.ndarray | None]) -> None:
        """Put back what :meth:`snapshot` gave (vectors of another shape are dropped)."""
        c = self.channels
        for slot, v in zip(np.asarray(slots, np.int64).tolist(), vectors, strict=True):
            if v is None or v.shape != (_FIXED + c + HISTORY * c,):
                self.reset(np.array([slot]))
                continue
            self.phase[slot], self.last_time[slot] = v[0], v[2]
            self.last_seq[slot], self.last_label[slot], self.kept[slot] = (
                int(v[1]),
                int(v[3]),
                int(v[4]),
            )
            self.last[slot] = v[_FIXED : _FIXED + c]
            self.history[slot] = v[_FIXED + c :].reshape(HISTORY, c)
