"""A simulated fleet of waist-worn phones, for the demo and for tests that need no data files.

Each device switches between activities every few tens of seconds. Walking-like activities are
gravity plus a periodic gait (fundamental near 2 Hz with harmonics) on the accelerometer and
gyroscope; static postures are gravity in a posture-specific orientation plus sensor noise.
Channels and units follow UCI HAPT: acceleration in g with gravity (along +x when upright),
angular rate in rad/s. Every device gets its own cadence, amplitude, orientation and start
time, and now and then drops a few samples (a jump in its sequence numbers).

>>> ds = simulate(SyntheticConfig(devices=3, duration_s=10, seed=1))
>>> len(ds.streams), ds.channels[:3], ds.activities[0]
(3, ('acc_x', 'acc_y', 'acc_z'), 'WALKING')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.datasets.base import DeviceStream, StreamDataset
from streams.datasets.uci_hapt import REPLAY_T0_MS
from streams.exceptions import DatasetError

SYNTHETIC_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
"""The channels every simulated device reports (as UCI HAPT)."""


def _unit(*v: float) -> tuple[float, float, float]:
    x = np.asarray(v) / np.linalg.norm(v)
    return (float(x[0]), float(x[1]), float(x[2]))


@dataclass(frozen=True)
class _Shape:
    gravity: tuple[float, float, float]
    cadence_hz: float = 0.0
    acc: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Gait amplitude (g) on x (vertical, step rate), y (sideways, stride rate), z (forward)."""
    gyro: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Gait amplitude (rad/s) on x (yaw, stride rate), y (step rate), z (stride rate)."""
    impact: float = 0.5
    """Weight of the 2nd and (halved) 3rd harmonic of the vertical acceleration."""


SHAPES: dict[str, _Shape] = {
    "WALKING": _Shape(_unit(1.0, -0.18, -0.06), 1.9, (0.30, 0.22, 0.22), (0.55, 0.70, 0.45), 0.5),
    "WALKING_UPSTAIRS": _Shape(
        _unit(0.95, -0.27, -0.25), 1.5, (0.24, 0.20, 0.32), (0.50, 0.75, 0.55), 0.3
    ),
    "WALKING_DOWNSTAIRS": _Shape(
        _unit(1.0, -0.15, 0.10), 2.2, (0.45, 0.24, 0.20), (0.80, 0.70, 0.45), 0.9
    ),
    "SITTING": _Shape(_unit(0.80, 0.10, 0.59)),
    "STANDING": _Shape(_unit(1.0, -0.17, -0.02)),
    "LAYING": _Shape(_unit(0.07, 0.76, 0.64)),
}
"""Signal shape per simulated activity; the names are those of UCI HAR."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of :func:`simulate`; the same config always gives the same fleet.

    ``dwell_s`` bounds how long a device stays in one activity and ``transition_s`` how long
    gravity takes to turn to the next posture (labelled with the new activity). ``noise_std``
    is white sensor noise in channel units (g, rad/s). Each sample starts a gap of ``gap_len``
    (inclusive range) dropped samples with probability ``gap_prob``. ``cadence_jitter``,
    ``amplitude_jitter`` (relative) and ``orientation_jitter_deg`` vary the devices; device
    ``i`` starts within ``start_jitter_s`` after ``t0_ms`` and is worn by user
    ``i % users + 1``.
    """

    devices: int = 20
    rate_hz: float = 50.0
    duration_s: float = 120.0
    activities: tuple[str, ...] = tuple(SHAPES)
    dwell_s: tuple[float, float] = (8.0, 40.0)
    transition_s: float = 1.0
    noise_std: float = 0.01
    gap_prob: float = 0.001
    gap_len: tuple[int, int] = (1, 10)
    cadence_jitter: float = 0.08
    amplitude_jitter: float = 0.2
    orientation_jitter_deg: float = 10.0
    start_jitter_s: float = 5.0
    t0_ms: int = REPLAY_T0_MS
    users: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [a for a in self.activities if a not in SHAPES]
        if unknown or not self.activities or len(set(self.activities)) != len(self.activities):
            raise DatasetError(f"activities must be distinct names from {tuple(SHAPES)}")
        if self.devices < 1 or self.rate_hz <= 0 or self.duration_s * self.rate_hz < 1:
            raise DatasetError("devices, rate_hz and duration_s must give at least one sample")
        if not 0 < self.dwell_s[0] <= self.dwell_s[1]:
            raise DatasetError(f"dwell_s must be 0 < low <= high, not {self.dwell_s}")
        if not 1 <= self.gap_len[0] <= self.gap_len[1] or not 0 <= self.gap_prob < 1:
            raise DatasetError("gap_len must be 1 <= low <= high and 0 <= gap_prob < 1")
        if self.users < 1:
            raise DatasetError("users must be at least 1")


def simulate(config: SyntheticConfig | None = None) -> StreamDataset:
    """A fleet of ``config.devices`` labelled streams (devices ``sim-00000``, ...)."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    d, n = cfg.devices, int(round(cfg.duration_s * cfg.rate_hz))
    activity, previous, segment, elapsed = _schedule(cfg, rng, d, n)
    shapes = [SHAPES[a] for a in cfg.activities]

    # Per-device variation and a random gait phase per activity segment; float32 throughout.
    f32 = np.float32
    table = {
        name: np.asarray([getattr(s, name) for s in shapes], f32)
        for name in ("gravity", "cadence_hz", "acc", "gyro", "impact")
    }
    cadence = table["cadence_hz"][activity] * (
        1 + cfg.cadence_jitter * rng.uniform(-1, 1, (d, 1)).astype(f32)
    )
    amplitude = 1 + cfg.amplitude_jitter * rng.uniform(-1, 1, (d, 1)).astype(f32)
    phase0 = rng.uniform(0, 2 * np.pi, (d, int(segment.max()) + 1)).astype(f32)
    t = np.arange(n, dtype=f32) / f32(cfg.rate_hz)
    step = f32(2 * np.pi) * cadence * t + np.take_along_axis(phase0, segment, 1)
    stride = step / 2
    acc = table["acc"][activity] * amplitude[..., None]
    gyro = table["gyro"][activity] * amplitude[..., None]
    impact = table["impact"][activity]

    signal = np.empty((d, n, 2, 3), f32)
    signal[..., 0, 0] = acc[..., 0] * (
        np.sin(step) + impact * (np.sin(2 * step + 0.6) + 0.5 * np.sin(3 * step + 1.1))
    )
    signal[..., 0, 1] = acc[..., 1] * np.sin(stride + 0.4)
    signal[..., 0, 2] = acc[..., 2] * (np.cos(step) + 0.3 * np.sin(2 * step))
    signal[..., 1, 0] = gyro[..., 0] * np.sin(stride + 1.3)
    signal[..., 1, 1] = gyro[..., 1] * (np.sin(step + 0.3) + 0.3 * np.sin(2 * step))
    signal[..., 1, 2] = gyro[..., 2] * np.sin(stride + 2.2)
    signal[..., 0, :] += _gravity(cfg, table["gravity"], activity, previous, elapsed)

    # Each device wears the phone slightly rotated: the same rotation for acc and gyro.
    rotation = _rotations(rng, d, np.deg2rad(cfg.orientation_jitter_deg)).astype(f32)
    signal = (signal.reshape(d, 2 * n, 3) @ rotation.transpose(0, 2, 1)).reshape(d, n, 6)
    signal += f32(cfg.noise_std) * rng.standard_normal(signal.shape, f32)

    kept = ~_gaps(cfg, rng, d, n)
    start_ms = rng.uniform(0, cfg.start_jitter_s * 1000, d).round().astype(np.int64)
    labels = activity.astype(np.int16)
    streams = []
    for i in range(d):
        seq = np.flatnonzero(kept[i])
        streams.append(
            DeviceStream(
                f"sim-{i:05d}",
                signal[i, seq],
                labels[i, seq],
                float(cfg.rate_hz),
                t0_ms=int(cfg.t0_ms + start_ms[i]),
                user=i % cfg.users + 1,
                seq=seq.astype(np.int64),
            )
        )
    return StreamDataset(
        "synthetic", SYNTHETIC_CHANNELS, tuple(cfg.activities), float(cfg.rate_hz), tuple(streams)
    )


def _schedule(
    cfg: SyntheticConfig, rng: np.random.Generator, d: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, all ``(d, n)``: activity code, the previous segment's activity, segment
    index and samples since the segment began. Consecutive segments differ in activity."""
    low, high = (max(1, int(round(x * cfg.rate_hz))) for x in cfg.dwell_s)
    max_segments = n // low + 2  # the first one is cut short
    dwell = rng.integers(low, high + 1, (d, max_segments))
    dwell[:, 0] = rng.integers(1, dwell[:, 0] + 1)  # devices join mid-activity
    a = len(cfg.activities)
    hops = rng.integers(1, a, (d, max_segments)) if a > 1 else np.zeros((d, max_segments), int)
    hops[:, 0] = rng.integers(0, a, d)
    codes = np.cumsum(hops, axis=1) % a
    ends = np.cumsum(dwell, axis=1)
    marks = np.zeros((d, n + 1), np.int64)
    rows, cols = np.nonzero(ends < n)
    np.add.at(marks, (rows, ends[rows, cols]), 1)
    segment = np.cumsum(marks[:, :n], axis=1)
    begins = np.concatenate((np.zeros((d, 1), np.int64), ends[:, :-1]), axis=1)
    before = np.concatenate((codes[:, :1], codes[:, :-1]), axis=1)
    elapsed = np.arange(n) - np.take_along_axis(begins, segment, 1)
    return (
        np.take_along_axis(codes, segment, 1),
        np.take_along_axis(before, segment, 1),
        segment,
        elapsed,
    )


def _gravity(
    cfg: SyntheticConfig,
    directions: np.ndarray,
    activity: np.ndarray,
    previous: np.ndarray,
    elapsed: np.ndarray,
) -> np.ndarray:
    """``(d, n, 3)`` gravity (1 g) turning from the previous posture over ``transition_s``."""
    width = max(1.0, cfg.transition_s * cfg.rate_hz)
    ramp = np.minimum(1, (elapsed + 1).astype(np.float32) / np.float32(width))[..., None]
    g = directions[previous]
    g += (directions[activity] - g) * ramp
    return g / np.sqrt(np.sum(g * g, axis=-1, keepdims=True))


def _rotations(rng: np.random.Generator, d: int, max_angle: float) -> np.ndarray:
    """``d`` rotation matrices about random axes by up to ``max_angle`` radians (Rodrigues)."""
    axis = rng.normal(size=(d, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, max_angle, d)[:, None, None]
    k = np.zeros((d, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= k.transpose(0, 2, 1)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _gaps(cfg: SyntheticConfig, rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    """``(d, n)`` mask of dropped samples; the first sample of each device is always kept."""
    starts = rng.random((d, n)) < cfg.gap_prob
    starts[:, 0] = False
    rows, cols = np.nonzero(starts)
    length = rng.integers(cfg.gap_len[0], cfg.gap_len[1] + 1, rows.size)
    marks = np.zeros((d, n + cfg.gap_len[1] + 1), np.int64)
    np.add.at(marks, (rows, cols), 1)
    np.add.at(marks, (rows, cols + length), -1)
    return np.cumsum(marks, axis=1)[:, :n] > 0
