"""The gravity frame: sensor input that does not depend on how the phone is held.

A phone in a pocket, on a belt or in a hand records the same walk along other axes. The gravity
frame replaces the raw x/y/z axes by quantities that no rotation of the device changes,
estimated causally, sample by sample, with a few numbers of state per device:

- ``g``, gravity: the accelerometer low-passed (exponential, time constant ``TAU_GRAVITY``);
- ``n``, the acceleration's magnitude ``|a|`` low-passed like gravity, and ``e``, motion energy:
  ``(|a| - n)^2`` low-passed (``TAU_MOTION``). Magnitudes, so that turning the device (which
  moves ``g``) is not motion, while walking (which shakes ``|a|``) is;
- ``r``, the walking reference: gravity as seen while the device moves (``g`` low-passed with a
  time constant ``TAU_REFERENCE`` of *motion*, gated by ``m``: 0 while ``e`` is below
  ``(MOTION_LEVEL n)^2``, 1 from four times that on, linear between).
  A phone on the body sits while walking as it does when its wearer stands, so the angle
  between ``g`` and ``r`` tells standing from sitting and lying whatever way up the phone is.

From them, with ``u = g / |g|`` the vertical, each sample becomes (the gyroscope's two only
when the model has one): vertical acceleration ``a . u``, horizontal acceleration
``|a - (a . u) u|``, uprightness ``u . r / |r|``, rotation about the vertical ``w . u`` and about
the horizontal ``|w - (w . u) u|``. The first sample after a reset starts ``g`` and ``r`` at
``a``, ``n`` at ``|a|`` and ``e`` at 0.

This module is the NumPy reference, used by the stream runtime and by training to fit the
normalisation; :class:`models.layers.GravityFrameCell` is the same computation as a Keras layer
(the conformance suite holds them to 1e-5).

>>> frame = GravityFrame.for_channels(["acc_x", "acc_y", "acc_z"], rate_hz=50)
>>> frame.features_of(np.tile([0.0, 0.0, 1.0], (100, 1)))[-1].round(3).tolist()  # upright, still
[1.0, 0.0, 1.0]
>>> frame.features_of(np.tile([0.0, -1.0, 0.0], (100, 1)))[-1].round(3).tolist()  # on its side
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.augment import axis_groups
from models.exceptions import SpecError

TAU_GRAVITY = 0.5
"""s: time constant of the gravity estimate (a low-pass near 0.3 Hz, as UCI HAR separates it)"""
TAU_MOTION = 0.25
"""s: time constant of the motion energy"""
TAU_REFERENCE = 5.0
"""s of motion: time constant of the walking reference"""
MOTION_LEVEL = 0.1
"""shaking of ``|a|`` (RMS, as a fraction of gravity) from which the walking reference moves;
it follows fully from twice that"""
STATE_SIZE = 8
"""per device: gravity (3), walking reference (3), motion energy (1), magnitude (1)"""
FEATURES = ("vertical_acc", "horizontal_acc", "upright", "vertical_rot", "horizontal_rot")
_EPS = 1e-12
_F32 = np.float32
_WITH_GRAVITY = re.compile(r"^(total_)?acc(el(eration|erometer)?)?$", re.IGNORECASE)
_GYRO = re.compile(r"^(body_)?gyr(o(scope)?)?$", re.IGNORECASE)


def _prefix(channels: Sequence[str], group: tuple[int, int, int]) -> str:
    return re.sub(r"[_.-]?[xyz]$", "", channels[group[0]], flags=re.IGNORECASE)


def _sensors(channels: Sequence[str]) -> tuple[tuple[int, int, int], tuple[int, ...]] | None:
    """The accelerometer's and the gyroscope's (or ``()``) channel indices, if ``channels``
    are one accelerometer with gravity and at most one gyroscope; else None."""
    groups = axis_groups(channels)
    acc = [g for g in groups if _WITH_GRAVITY.match(_prefix(channels, g))]
    gyro = [g for g in groups if _GYRO.match(_prefix(channels, g))]
    if len(acc) != 1 or len(gyro) > 1 or 3 * (1 + len(gyro)) != len(channels):
        return None
    return acc[0], gyro[0] if gyro else ()


@dataclass(frozen=True)
class GravityFrame:
    """Which channels the frame reads and its filter coefficients (per sample, at the model's
    rate): ``acc``/``gyro`` are channel indices (x, y, z), ``gyro`` empty without one."""

    channels: int
    acc: tuple[int, int, int]
    gyro: tuple[int, ...]
    alpha_gravity: float
    alpha_motion: float
    alpha_reference: float

    @classmethod
    def for_channels(cls, channels: Sequence[str], rate_hz: float) -> GravityFrame:
        """The frame of a model reading ``channels`` at ``rate_hz``; :class:`SpecError` unless
        they are one accelerometer that includes gravity (``acc_x``, ``total_acc_x`` ...) and
        optionally one gyroscope, nothing else."""
        sensors = _sensors(channels)
        if sensors is None:
            raise SpecError(
                "the gravity frame reads one accelerometer that includes gravity (acc_x/y/z or "
                "total_acc_x/y/z) and optionally one gyroscope (gyro_x/y/z), nothing else; "
                f"these channels are {', '.join(channels)}"
            )
        if not rate_hz > 0:
            raise SpecError(f"the gravity frame needs a sample rate > 0, not {rate_hz}")

        def alpha(tau: float) -> float:
            return 1.0 - math.exp(-1.0 / (tau * rate_hz))

        acc, gyro = sensors
        return cls(
            len(channels), acc, gyro,
            alpha(TAU_GRAVITY), alpha(TAU_MOTION), alpha(TAU_REFERENCE),
        )  # fmt: skip

    @staticmethod
    def reads(channels: Sequence[str]) -> bool:
        """Whether the frame can read ``channels`` (see :meth:`for_channels`).

        >>> GravityFrame.reads(["acc_x", "acc_y", "acc_z"]), GravityFrame.reads(["ax", "ay"])
        (True, False)
        """
        return _sensors(channels) is not None

    @property
    def width(self) -> int:
        """How many features each sample becomes: 5 with a gyroscope, 3 without."""
        return 5 if self.gyro else 3

    @property
    def names(self) -> tuple[str, ...]:
        return FEATURES[: self.width]

    def step(self, x: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:
        """Advance ``state`` (B, STATE_SIZE) by raw samples ``x`` (B, channels), in place;
        write their features into ``out`` (B, width). A row of zeros is a reset state."""
        f32 = _F32
        s = state.T.copy()  # quantity-major: every operation below runs over contiguous rows
        a = x.T[list(self.acc)]
        g, r, e, n = s[0:3], s[3:6], s[6], s[7]
        fresh = np.flatnonzero((g * g).sum(0) == 0)
        size = np.sqrt((a * a).sum(0))
        g += f32(self.alpha_gravity) * (a - g)
        n += f32(self.alpha_gravity) * (size - n)
        if len(fresh):
            g[:, fresh], r[:, fresh], n[fresh] = a[:, fresh], a[:, fresh], size[fresh]
        e += f32(self.alpha_motion) * (np.square(size - n) - e)
        level = np.maximum(np.square(f32(MOTION_LEVEL) * n), f32(_EPS))
        m = np.clip(e / level - f32(1.0), f32(0.0), f32(3.0)) / f32(3.0)
        r += (f32(self.alpha_reference) * m) * (g - r)
        u = g / np.sqrt(np.maximum((g * g).sum(0), f32(_EPS)))
        features = np.empty((self.width, len(x)), f32)
        features[0] = vertical = (a * u).sum(0)
        features[1] = np.sqrt(np.square(a - vertical * u).sum(0))
        features[2] = (u * r).sum(0) / np.sqrt(np.maximum((r * r).sum(0), f32(_EPS)))
        if self.gyro:
            w = x.T[list(self.gyro)]
            features[3] = spin = (w * u).sum(0)
            features[4] = np.sqrt(np.square(w - spin * u).sum(0))
        out[...] = features.T
        state[...] = s.T

    def features_of(self, values: np.ndarray) -> np.ndarray:
        """The features of recordings ``values`` ((T, channels) or (N, T, channels)), each from
        a reset state: (T, width) or (N, T, width), float32."""
        values = np.asarray(values, _F32)
        batch = values if values.ndim == 3 else values[None]
        if batch.ndim != 3 or batch.shape[2] != self.channels:
            raise SpecError(f"expected (..., T, {self.channels}) samples, not {values.shape}")
        n, steps, _ = batch.shape
        state = np.zeros((n, STATE_SIZE), _F32)
        out = np.empty((n, steps, self.width), _F32)
        for t in range(steps):
            self.step(batch[:, t], state, out[:, t])
        return out if values.ndim == 3 else out[0]

    def features_of_each(self, recordings: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`features_of` for recordings of different lengths, computed side by side (each
        padded with its last sample, which a causal filter cannot see)."""
        if not recordings:
            return []
        longest = max(len(v) for v in recordings)
        batch = np.empty((len(recordings), longest, self.channels), _F32)
        for i, v in enumerate(recordings):
            batch[i, : len(v)] = v
            batch[i, len(v) :] = v[-1] if len(v) else 0.0
        out = self.features_of(batch)
        return [out[i, : len(v)] for i, v in enumerate(recordings)]
