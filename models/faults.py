"""Sensor faults injected into recordings at known positions, and the labelled windows an
anomaly detector is scored on (NumPy only).

Every fault changes the samples of its span ``[start, start + length)`` and nothing else;
magnitudes are in units of each channel's standard deviation (``scale``, by default the
recording's own), so that one setting suits accelerometers and gyroscopes alike. Channels are
read in x/y/z triples (one sensor each) when their count is a multiple of 3.

- ``stuck``: one channel holds its last value before the span.
- ``spike``: one channel jumps by :data:`SPIKE_STD` std, random sign, on every span sample
  (spans of a few samples suit it: :data:`LENGTHS`).
- ``drift``: one channel gains a bias ramping linearly from 0 to :data:`DRIFT_STD` std.
- ``flip``: one channel's sign is flipped.
- ``swap``: one channel and another axis of the same sensor trade places.
- ``dropout``: every channel reads 0.
- ``noise``: one channel gains Gaussian noise of :data:`NOISE_STD` std.
- ``glitch``: the sampling clock slips: every channel repeats (or skips) one sample in
  :data:`GLITCH_EVERY`, so the span lags (or leads) the true signal by a growing offset.

>>> x = np.arange(12, dtype=np.float32).reshape(6, 2)
>>> inject(x, "dropout", 2, 2, np.random.default_rng(0))[:, 0].tolist()
[0.0, 2.0, 0.0, 0.0, 8.0, 10.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.exceptions import ModelsError
from models.windowing import sliding_windows

FAULTS: tuple[str, ...] = ("stuck", "spike", "drift", "flip", "swap", "dropout", "noise", "glitch")
SPIKE_STD = 8.0
DRIFT_STD = 3.0
NOISE_STD = 1.0
GLITCH_EVERY = 5
LENGTHS: dict[str, int] = {fault: 64 for fault in FAULTS} | {"spike": 3, "drift": 256}
"""the span of each fault in the labelled windows (samples; 64 = 1.3 s at 50 Hz): a spike is a
few samples, a drift is slow"""


def inject(
    values: np.ndarray,
    fault: str,
    start: int,
    length: int,
    rng: np.random.Generator,
    scale: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """A copy of the recording ``values`` ``(T, C)`` with ``fault`` over ``[start, start +
    length)``; ``rng`` draws the channel, signs and noise, ``scale`` is each channel's std."""
    if fault not in FAULTS:
        raise ModelsError(f"fault must be one of {FAULTS}, not {fault!r}")
    n, channels = values.shape
    if length < 1 or start < 0 or start + length > n:
        raise ModelsError(f"a fault of {length} samples at {start} does not fit {n} samples")
    out = np.array(values, copy=True)
    std = np.std(values, axis=0) if scale is None else np.asarray(scale, values.dtype)
    std = np.where(std > 1e-6, std, 1.0)
    span = slice(start, start + length)
    c = int(rng.integers(channels))
    if fault == "stuck":
        out[span, c] = values[max(start - 1, 0), c]
    elif fault == "spike":
        out[span, c] += SPIKE_STD * std[c] * rng.choice([-1.0, 1.0], length)
    elif fault == "drift":
        out[span, c] += DRIFT_STD * std[c] * np.arange(1, length + 1) / length
    elif fault == "flip":
        out[span, c] = -values[span, c]
    elif fault == "swap":
        other = _partner(c, channels, rng)
        out[span, [c, other]] = values[span, [other, c]]
    elif fault == "dropout":
        out[span] = 0.0
    elif fault == "noise":
        out[span, c] += NOISE_STD * std[c] * rng.standard_normal(length)
    else:  # glitch: sample k of the span reads sample k -/+ ceil((k + 1) / GLITCH_EVERY)
        slip = -(-np.arange(1, length + 1) // GLITCH_EVERY)
        sign = 1 if rng.random() < 0.5 else -1  # skipped or repeated samples
        out[span] = values[np.clip(np.arange(start, start + length) + sign * slip, 0, n - 1)]
    return out


def _partner(c: int, channels: int, rng: np.random.Generator) -> int:
    """Another axis of channel ``c``'s sensor (x/y/z triples), or any other channel."""
    if channels < 2:
        raise ModelsError("swapping axes needs two channels or more")
    if channels % 3 == 0:
        return 3 * (c // 3) + (c % 3 + 1 + int(rng.integers(2))) % 3
    return (c + 1 + int(rng.integers(channels - 1))) % channels


def faulty_windows(
    recordings: Sequence[np.ndarray],
    fault: str,
    *,
    window: int,
    stride: int,
    length: int | None = None,
    period: int | None = None,
    scale: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(N, window, C)`` of every recording ``(T, C)`` with ``fault`` injected, and
    their labels ``(N,)``: 1 if the window overlaps a fault's span, else 0.

    One fault of ``length`` samples (default :data:`LENGTHS`) starts at a seeded random place
    in every ``period`` samples (default ``4 * window + length``), at least ``window`` samples
    after the previous one ends, so most windows are clean. Windows every ``stride`` samples.
    """
    if fault not in FAULTS:
        raise ModelsError(f"fault must be one of {FAULTS}, not {fault!r}")
    length = LENGTHS[fault] if length is None else length
    period = 4 * window + length if period is None else period
    if period < window + length:
        raise ModelsError("period must leave a window's room between faults")
    Xs, ys = [], []
    for i, values in enumerate(recordings):
        rng = np.random.default_rng((seed, FAULTS.index(fault), i))
        std = np.std(values, axis=0) if scale is None else scale  # of the clean recording
        faulty = np.zeros(len(values), bool)
        out = np.asarray(values)
        for block in range(0, len(values) - period + 1, period):
            start = block + window + int(rng.integers(period - window - length + 1))
            out = inject(out, fault, start, length, rng, std)
            faulty[start : start + length] = True
        X, _, end = sliding_windows(out, faulty, window, stride)
        hits = np.concatenate([[0], np.cumsum(faulty)])
        Xs.append(np.ascontiguousarray(X))
        ys.append((hits[end + 1] - hits[end + 1 - window] > 0).astype(np.int8))
    if not Xs:
        raise ModelsError("no recordings to inject faults into")
    return np.concatenate(Xs), np.concatenate(ys)
