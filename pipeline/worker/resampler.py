"""Devices at any rate, one model rate: each device's samples resampled as they arrive.

A model is trained at one rate (50 Hz, say) and phones send at 20, 100 or 200 Hz. A record says
its rate; a run of a device at another rate than the model's is turned into samples at the
model's rate before the runtime sees it:

- positions are counted in model steps along the device's own sequence numbers (a sample at
  ``rate`` advances ``model_rate / rate`` steps, a gap of ``g`` missing samples ``g + 1`` times
  that), so jittered record timestamps cannot fold time back;
- values at whole model steps are interpolated linearly between the two input samples around
  them; the label is the one in force (of the input sample at or before the step);
- when the device is more than 1.5× faster than the model, the input first goes through a
  linear-phase low-pass FIR (:func:`lowpass_taps`, up to :data:`HISTORY` + 1 taps), so faster
  motion does not alias; the filter's delay (half its length) is taken back out of the times,
  so a step's value and time still match (its output comes that many samples later);
- each output step names the input sample at or before the time it stands for (its sequence
  number; its event time plus the fraction of a step after it).

Everything a device carries between batches (the last input sample, the phase of the next
model step, the raw samples the low-pass needs) lives in per-slot arrays, checkpointed with the
device (:meth:`Resampler.snapshot`), so a restart or a rebalance continues the same grid. A run
at the model's rate (within 1 %) passes through untouched and ends any resampling state.
"""

from __future__ import annotations

import numpy as np

from pipeline.worker.sequencer import DeviceRun, labels_of
from streams.datasets.resample import ANTI_ALIAS_ABOVE
from streams.record import Record

HISTORY = 8
"""raw samples kept per device for the low-pass filter (its taps: at most HISTORY + 1)"""
SLOWEST, FASTEST = 0.2, 8.0
"""the rates served, as fractions of the model's (10-400 Hz for a 50 Hz model); records at
other rates are dead letters with reason ``rate_unsupported``"""
SAME_RATE = 0.01
"""a rate within this fraction of the model's is the model's"""
_FIXED = 5
"""state vector: phase, last sequence number, last event time, last label, history length"""


def lowpass_taps(ratio: float) -> np.ndarray:
    """A linear-phase low-pass FIR for a device ``ratio`` times faster than the model: a
    Hamming-windowed sinc at the model's Nyquist frequency, ``2 * ceil(ratio) + 1`` taps (at
    most ``HISTORY + 1``), summing to 1; its delay is half its length.

    >>> [round(float(t), 3) for t in lowpass_taps(2.0)]
    [0.0, 0.204, 0.593, 0.204, 0.0]
    """
    n = min(2 * int(np.ceil(ratio)) + 1, HISTORY + 1 - (HISTORY % 2))
    m = np.arange(n) - (n - 1) / 2
    h = np.sinc(m / ratio) * np.hamming(n)
    h[np.abs(h) < 1e-9 * np.abs(h).max()] = 0.0  # the sinc's zeros, exactly: skipped
    return (h / h.sum()).astype(np.float32)


def _newest(history: np.ndarray, new: np.ndarray, starts: np.ndarray, counts: np.ndarray):
    """Per device, its newest ``HISTORY`` rows: the last ones of its ``counts[i]`` rows of
    ``new`` (from ``starts[i]``), the rest from the end of its ``history`` rows (oldest first)."""
    newest = counts[:, None] - HISTORY + np.arange(HISTORY)
    from_batch = newest >= 0
    taken = new[np.where(from_batch, starts[:, None] + newest, 0)]
    carried = history[np.arange(len(counts))[:, None], np.where(from_batch, 0, newest + HISTORY)]
    mask = from_batch.reshape(from_batch.shape + (1,) * (new.ndim - 1))
    return np.where(mask, taken, carried)


class Resampler:
    """The per-device state of resampling to ``rate_hz``, for ``channels`` channels."""

    def __init__(self, rate_hz: float, channels: int) -> None:
        self.rate_hz = rate_hz
        self.channels = channels
        self.capacity = 0
        self.ensure_capacity(1024)

    def at_model_rate(self, rates: np.ndarray) -> np.ndarray:
        """Which of ``rates`` are the model's (within 1 %; 0 means not known: the model's)."""
        return (rates <= 0) | (np.abs(rates - self.rate_hz) <= SAME_RATE * self.rate_hz)

    def supports(self, rate_hz: float) -> bool:
        """Whether a device at ``rate_hz`` is served."""
        return SLOWEST * self.rate_hz <= rate_hz <= FASTEST * self.rate_hz

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
        self.history_labels = grown("history_labels", (HISTORY,), np.int16, -1)
        self.history_seqs = grown("history_seqs", (HISTORY,), np.int64, -1)
        """their labels and sequence numbers"""
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
        other = ~self.at_model_rate(np.fromiter((r.rate_hz for r in runs), np.float64, len(runs)))
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
        values, delay = self._lowpass(raw, dev, starts, counts, slots, step, active)
        shift = delay * step  # model steps a filtered sample lags the signal
        # positions in model steps, relative to each device's last input sample (or, for a
        # device starting now, to its first sample; its first output step lies where the
        # filtered signal reaches its first sample)
        ref_seq = np.where(active, self.last_seq[slots], seqs[starts])
        pos = (seqs - ref_seq[dev]) * step[dev]
        phase = np.where(active, self.phase[slots], shift)
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
        v_left, t_left = values[left], times[left]
        if carried.any():
            held = slots[out_dev[carried]]
            v_left[carried], t_left[carried] = self.last[held], self.last_time[held]
        out_values = values[right]  # v_left + (v_right - v_left) * w, in place
        out_values -= v_left
        out_values *= w[:, None].astype(np.float32)
        out_values += v_left
        out_times = t_left + (q - p_left - shift[out_dev]) * (1000.0 / rate)
        # the input sample a step stands for: ``delay`` before the one at or before it
        k = np.where(carried, -1, left - first_in) - delay[out_dev]  # < 0: an earlier batch
        early = k < 0
        at = np.where(early, 0, first_in + k)
        seq_out, label_out = seqs[at], labels[at]
        if early.any():
            held, back = slots[out_dev[early]], HISTORY + k[early]
            seq_out[early] = self.history_seqs[held, back]
            label_out[early] = self.history_labels[held, back]
        for kept, new in ((self.history_seqs, seqs), (self.history_labels, labels)):
            kept[slots] = _newest(kept[slots], new, starts, counts)

        # carried to the next batch (the history of samples and labels: by _lowpass, above)
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

    def _lowpass(self, raw, dev, starts, counts, slots, step, active):
        """Devices more than 1.5× faster than the model: each input sample through a causal
        low-pass FIR (:func:`lowpass_taps`); the raw history it needs is carried in
        ``self.history``. The filtered samples, and each device's filter delay in samples."""
        n_dev = len(slots)
        taps = np.zeros((n_dev, HISTORY + 1), np.float32)
        taps[:, 0] = 1.0  # no filter
        delay = np.zeros(n_dev, np.int64)
        for ratio in np.unique(1.0 / step[1.0 / step > ANTI_ALIAS_ABOVE]).tolist():
            h = lowpass_taps(ratio)
            which = 1.0 / step == ratio
            taps[which, : len(h)], delay[which] = h, (len(h) - 1) // 2
        kept = np.where(active, self.kept[slots], 0)
        history = self.history[slots]  # (devices, HISTORY, C), oldest first
        self.history[slots] = _newest(history, raw, starts, counts)
        self.kept[slots] = np.minimum(HISTORY, kept + counts)
        if not delay.any():
            return raw, delay
        filtered = delay > 0
        taps[~filtered] = taps[np.argmax(filtered)]  # computed alike, then put back (below)
        within = np.arange(len(raw)) - starts[dev]
        reach = int(delay.max()) * 2  # the filter's oldest tap
        edge = np.flatnonzero(within < reach)  # rows whose older samples are partly carried

        def before(back: int, rows: np.ndarray) -> np.ndarray:
            """The sample ``back`` before each of ``rows`` (from the history where the batch
            has none)."""
            inside = (within[rows] >= back)[:, None]
            carried = history[dev[rows], np.clip(HISTORY - back + within[rows], 0, HISTORY - 1)]
            return np.where(inside, raw[np.maximum(rows - back, 0)], carried)

        total = np.zeros_like(raw)
        scratch = np.empty_like(raw)
        for back in range(reach + 1):
            column = taps[:, back]
            if not column.any():
                continue
            weight = column[0] if np.all(column == column[0]) else column[dev][:, None]
            if back == 0:
                total += np.multiply(raw, weight, out=scratch)
                continue
            # every row from the one ``back`` rows up; then the rows whose sample that far back
            # is another device's or carried from the last batch
            np.multiply(raw[:-back], weight if np.ndim(weight) == 0 else weight[back:],
                        out=scratch[back:])  # fmt: skip
            rows = edge[within[edge] < back]  # all carried
            carried = history[dev[rows], HISTORY - back + within[rows]]
            scratch[rows] = carried * (weight if np.ndim(weight) == 0 else weight[rows])
            total += scratch
        # a device's first samples meet fewer samples than taps: the taps there are, rescaled
        have = kept[dev] + within + 1
        young = kept < 2 * delay  # devices whose first samples are in this batch
        short = np.flatnonzero(young[dev] & (have < 2 * delay[dev] + 1)) if young.any() else []
        if len(short):
            sub_total = np.zeros((len(short), raw.shape[1]), np.float32)
            sub_weight = np.zeros(len(short), np.float32)
            for back in range(reach + 1):
                w = np.where(have[short] > back, taps[dev[short], back], 0.0).astype(np.float32)
                sub_total += before(back, short) * w[:, None]
                sub_weight += w
            none = sub_weight == 0  # only zero taps met yet
            sub_total[none], sub_weight[none] = raw[short[none]], 1.0
            total[short] = sub_total / sub_weight[:, None]
        if not filtered.all():
            plain = np.flatnonzero(~filtered[dev])
            total[plain] = raw[plain]
        return total, delay

    # -- checkpoints ------------------------------------------------------------------------

    def snapshot(self, slots: np.ndarray) -> list[np.ndarray | None]:
        """Each slot's carried state as one float64 vector (None: nothing carried): phase,
        last sequence number, event time and label, history length, the last sample, then the
        history's samples, labels and sequence numbers."""
        out: list[np.ndarray | None] = []
        for slot in np.asarray(slots, np.int64).tolist():
            if np.isnan(self.phase[slot]):
                out.append(None)
                continue
            fixed = [self.phase[slot], self.last_seq[slot], self.last_time[slot],
                     self.last_label[slot], self.kept[slot]]  # fmt: skip
            parts = (fixed, self.last[slot], self.history[slot].ravel(),
                     self.history_labels[slot], self.history_seqs[slot])  # fmt: skip
            out.append(np.concatenate([np.asarray(p, np.float64) for p in parts]))
        return out

    def restore(self, slots: np.ndarray, vectors: list[np.ndarray | None]) -> None:
        """Put back what :meth:`snapshot` gave (vectors of another shape are dropped)."""
        c = self.channels
        cuts = np.cumsum([_FIXED, c, HISTORY * c, HISTORY, HISTORY])
        for slot, v in zip(np.asarray(slots, np.int64).tolist(), vectors, strict=True):
            if v is None or v.shape != (cuts[-1],):
                self.reset(np.array([slot]))
                continue
            fixed, last, history, labels, seqs, _ = np.split(v, cuts)
            self.phase[slot], self.last_time[slot] = fixed[0], fixed[2]
            self.last_seq[slot], self.last_label[slot] = int(fixed[1]), int(fixed[3])
            self.kept[slot] = int(fixed[4])
            self.last[slot], self.history[slot] = last, history.reshape(HISTORY, c)
            self.history_labels[slot], self.history_seqs[slot] = labels, seqs


class RecordResampler:
    """Records at any rate as records at ``rate_hz``, device by device, for a consumer without
    a sequencer (the trainer): samples at or before a device's last one are dropped first, and
    the model steps of a device are numbered on from its first (``Record.seq``).

    >>> import numpy as np
    >>> from streams.record import Record
    >>> to_50 = RecordResampler(50.0, 1)
    >>> r = to_50(Record("d", 0, 1_000, 100.0, np.arange(9, dtype=np.float32)[:, None]))
    >>> more = Record("d", 9, 1_090, 100.0, np.ones((4, 1), np.float32))
    >>> r.seq, r.rate_hz, r.n, to_50(more).seq
    (0, 50.0, 4, 4)
    """

    def __init__(self, rate_hz: float, channels: int) -> None:
        self.resampler = Resampler(rate_hz, channels)
        self._slot: dict[str, int] = {}
        self._steps: list[int] = []
        """model steps made so far, per slot"""

    def __call__(self, record: Record) -> Record | None:
        """``record`` at the model's rate (itself if it is), or None if it made no step yet."""
        resampler = self.resampler
        if resampler.at_model_rate(np.array([record.rate_hz])).all():
            return record
        slot = self._slot.get(record.device)
        if slot is None:
            slot = self._slot[record.device] = len(self._steps)
            self._steps.append(0)
            resampler.ensure_capacity(2 * len(self._steps))
        seqs = record.sequence()
        started = not np.isnan(resampler.phase[slot])
        fresh = seqs > resampler.last_seq[slot] if started else np.ones(record.n, bool)
        if not fresh.any():
            return None
        run = DeviceRun(record.device, seqs[fresh], record.values[fresh], labels_of(record)[fresh],
                        record.times_ms()[fresh], rate_hz=record.rate_hz)  # fmt: skip
        runs, _ = resampler.resample([run], np.array([slot]))
        if not runs:
            return None
        made = runs[0]
        first = self._steps[slot]
        self._steps[slot] += len(made.seqs)
        return Record(record.device, first, int(round(made.times_ms[0])), resampler.rate_hz,
                      made.values, made.labels)  # fmt: skip
