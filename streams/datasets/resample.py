"""Recordings with real timestamps onto a regular grid: what phones and watches really send.

A device's timestamps repeat (samples delivered in bursts), jitter and stop for a while. Each
device stream is turned into samples on a grid at the target rate:

- samples with the same timestamp are merged (their mean; the label of the last one);
- a pause longer than ``max_gap_ms`` splits the stream: the grid points inside it are a gap in
  the sequence numbers, never interpolated;
- values at grid points are interpolated linearly, after a low-pass filter (windowed sinc at the
  new Nyquist frequency) when the rate drops by more than 1.5×, so that faster motion does not
  alias into the slower grid;
- the label of a grid point is the label in force then (of the last sample at or before it);
- a stream already on the grid (most steps one period, every timestamp within 5 % of a period
  of a grid point, none repeated) is kept sample for sample, its missing grid points gaps.

>>> t = np.array([0.0, 9.0, 9.0, 21.0, 30.0, 41.0])  # ms: jitter and a repeated timestamp
>>> x, y = np.arange(6, dtype=np.float32)[:, None], np.zeros(6, np.int16)
>>> seq, v, _, info = regularise(t, x, y, 100.0)
>>> seq.tolist(), [round(float(x), 2) for x in v[:, 0]], info.repeats
([0, 1, 2, 3, 4], [0.0, 1.62, 2.88, 4.0, 4.91], 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streams.datasets.base import DeviceStream
from streams.exceptions import DatasetError

TimeUnit = Literal["auto", "s", "ms", "us", "ns"]
TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
DEFAULT_MAX_GAP_MS = 300.0
"""a pause longer than this is a gap, not interpolated (bursty phones pause up to ~200 ms)"""
ON_GRID = 0.05
"""a timestamp within this fraction of a period of a grid point is on the grid"""
ANTI_ALIAS_ABOVE = 1.5
"""low-pass before interpolating when the native rate is more than this times the target's"""


@dataclass(frozen=True)
class DeviceReport:
    """What resampling did to one device's stream."""

    device: str
    native_hz: float
    """1000 / the median step between distinct timestamps"""
    samples_in: int
    samples_out: int
    repeats: int
    """samples merged into an earlier one with the same timestamp"""
    gaps: int
    """pauses longer than ``max_gap_ms`` (kept as sequence gaps)"""
    kept: bool
    """already on the grid: kept sample for sample"""
    filtered: bool = False
    """low-pass filtered before downsampling"""

    def line(self) -> str:
        how = "kept as is" if self.kept else "resampled" + (", low-pass" if self.filtered else "")
        return (f"{self.device}: {self.native_hz:.1f} Hz native, {self.samples_in:,} samples in, "
                f"{self.samples_out:,} out, {self.repeats:,} repeats merged, {self.gaps} gaps; "
                f"{how}")  # fmt: skip


@dataclass(frozen=True)
class ResampleReport:
    """What resampling did to a dataset, device by device."""

    rate_hz: float
    time_unit: str
    max_gap_ms: float
    devices: tuple[DeviceReport, ...]

    @property
    def changed(self) -> bool:
        return any(not d.kept for d in self.devices)

    def summary(self) -> str:
        ds = self.devices
        native = float(np.median([d.native_hz for d in ds])) if ds else float("nan")
        resampled = sum(not d.kept for d in ds)
        filtered = " (low-pass before downsampling)" if any(d.filtered for d in ds) else ""
        return (
            f"timestamps in {self.time_unit}; {resampled} of {len(ds)} devices resampled to "
            f"{self.rate_hz:g} Hz{filtered}: native {native:.1f} Hz (median), "
            f"{sum(d.samples_in for d in ds):,} samples in, {sum(d.samples_out for d in ds):,} "
            f"out, {sum(d.repeats for d in ds):,} repeated timestamps merged, "
            f"{sum(d.gaps for d in ds)} gaps over {self.max_gap_ms:g} ms"
        )


def to_ms(ts: np.ndarray, groups: Sequence[np.ndarray], unit: TimeUnit) -> tuple[np.ndarray, str]:
    """Timestamps in milliseconds and their unit (``auto``: :func:`detect_time_unit`)."""
    if unit == "auto":
        unit = detect_time_unit(ts, groups)
    if unit not in TO_MS:
        raise DatasetError(f"time unit {unit!r}: give auto, s, ms, us or ns")
    return ts * TO_MS[unit], unit


def detect_time_unit(ts: np.ndarray, groups: Sequence[np.ndarray]) -> str:
    """The unit that puts the median step between a device's distinct timestamps between
    0.5 ms and 500 ms (2 to 2,000 Hz): s, ms, us or ns.

    >>> t = np.arange(0, 10**9, 10**7)  # 100 Hz in ns
    >>> detect_time_unit(t.astype(float), [np.arange(t.size)])
    'ns'
    """
    steps = np.concatenate([np.diff(ts[rows]) for rows in groups] or [np.zeros(0)])
    steps = steps[steps > 0]
    if steps.size == 0:
        return "ms"
    step = float(np.median(steps))
    for unit, below in (("s", 0.5), ("ms", 500.0), ("us", 5e5)):
        if step < below:
            return unit
    return "ns"


def regularise(
    t_ms: np.ndarray,
    values: np.ndarray,
    labels: np.ndarray,
    rate_hz: float,
    max_gap_ms: float = DEFAULT_MAX_GAP_MS,
    device: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, DeviceReport]:
    """One device's samples at sorted times ``t_ms`` on the grid ``t_ms[0] + k * 1000 /
    rate_hz``: sequence numbers ``k``, values ``(m, C)`` float32, labels ``(m,)`` int16 and
    what was done."""
    period = 1000.0 / rate_hz
    times, first = np.unique(t_ms, return_index=True)
    repeats = t_ms.size - times.size
    if repeats:
        counts = np.diff(np.append(first, t_ms.size))
        values = np.add.reduceat(values.astype(np.float64), first, axis=0) / counts[:, None]
        labels = labels[first + counts - 1]
    steps = np.diff(times)
    native = 1000.0 / float(np.median(steps)) if steps.size else rate_hz
    breaks = np.flatnonzero(steps > max_gap_ms) + 1
    report = dict(device=device, native_hz=native, samples_in=int(t_ms.size),
                  repeats=int(repeats), gaps=int(breaks.size))  # fmt: skip
    seq = np.rint((times - times[0]) / period).astype(np.int64)
    on_grid = np.abs(times - times[0] - seq * period).max(initial=0.0) <= ON_GRID * period
    at_rate = steps.size == 0 or np.mean(np.abs(steps - period) <= ON_GRID * period) >= 0.5
    if not repeats and on_grid and at_rate and np.all(np.diff(seq) > 0):
        out = DeviceReport(samples_out=int(seq.size), kept=True, **report)
        return seq, values.astype(np.float32), labels.astype(np.int16), out
    filtered = native > ANTI_ALIAS_ABOVE * rate_hz
    parts = []
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, times.size], strict=True):
        first, last = (times[a] - times[0]) / period, (times[b - 1] - times[0]) / period
        k = np.arange(np.ceil(first - 1e-9), np.floor(last + 1e-9) + 1).astype(np.int64)
        if k.size == 0:
            continue
        grid = times[0] + k * period
        t, v = times[a:b], values[a:b]
        if filtered and b - a > 1:
            t, v = _lowpass(t, v, native, rate_hz)
        at = np.clip(np.searchsorted(times[a:b], grid, side="right") - 1, 0, b - a - 1)
        parts.append((k, _interp(grid, t, v), labels[a:b][at]))
    if not parts:
        empty = np.zeros((0, values.shape[1]), np.float32)
        out = DeviceReport(samples_out=0, kept=False, filtered=filtered, **report)
        return np.zeros(0, np.int64), empty, np.zeros(0, np.int16), out
    seq, vals, labs = (np.concatenate(p) for p in zip(*parts, strict=True))
    out = DeviceReport(samples_out=int(seq.size), kept=False, filtered=filtered, **report)
    return seq, vals.astype(np.float32), labs.astype(np.int16), out


def _interp(at: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each column of ``v`` (samples at times ``t``) interpolated linearly at times ``at``."""
    return np.stack([np.interp(at, t, v[:, c]) for c in range(v.shape[1])], axis=1)


def _lowpass(
    t: np.ndarray, v: np.ndarray, native_hz: float, rate_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """``v`` on a regular grid at the native rate, low-passed at ``rate_hz / 2`` (a Hamming
    windowed sinc, zero phase, edges held)."""
    step = 1000.0 / native_hz
    fine = t[0] + np.arange(int((t[-1] - t[0]) / step) + 1) * step
    x = _interp(fine, t, v)
    ratio = native_hz / rate_hz
    half = int(np.ceil(2.0 * ratio))
    m = np.arange(-half, half + 1)
    h = np.sinc(m / ratio) / ratio * np.hamming(m.size)
    h /= h.sum()
    padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
    return fine, np.stack(
        [np.convolve(padded[:, c], h, mode="valid") for c in range(x.shape[1])], axis=1
    )


def at_rate(stream: DeviceStream, rate_hz: float, device: str | None = None) -> DeviceStream:
    """``stream`` as a device at ``rate_hz`` would have recorded it (by :func:`regularise`:
    interpolated, low-passed first when the rate drops by more than 1.5×, the label in force at
    each sample); named ``device`` (default: the same).

    >>> s = DeviceStream("d", np.arange(5, dtype=np.float32)[:, None], np.zeros(5, np.int16), 50.0)
    >>> at_rate(s, 100.0).values[:, 0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    """
    times = stream.t0_ms + stream.sequence() * (1000.0 / stream.rate_hz)
    seq, values, labels, _ = regularise(times, stream.values, stream.labels, rate_hz,
                                        max_gap_ms=float("inf"))  # fmt: skip
    return DeviceStream(device or stream.device, values, labels, rate_hz, stream.t0_ms,
                        stream.user, seq=seq)  # fmt: skip
