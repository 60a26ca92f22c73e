"""Training-time augmentation: windows seen as a phone worn at another angle would record them.

Every x/y/z group of channels (``total_acc_x/_y/_z``, ``body_gyro_x/_y/_z`` ...) of a window is
turned by the same random rotation, so that the model learns activities rather than how one
user's phone happened to sit on the belt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from models.exceptions import ModelsError

_AXIS = re.compile(r"^(.*?)[_.-]?([xyz])$", re.IGNORECASE)


def axis_groups(channels: Sequence[str]) -> list[tuple[int, int, int]]:
    """Indices ``(x, y, z)`` of every sensor whose three axes are all among ``channels``.

    >>> axis_groups(["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "light"])
    [(0, 1, 2), (3, 4, 5)]
    >>> axis_groups(["ax", "ay"])
    []
    """
    found: dict[str, dict[str, int]] = {}
    for i, name in enumerate(channels):
        if m := _AXIS.match(name):
            found.setdefault(m.group(1).lower(), {})[m.group(2).lower()] = i
    return [(a["x"], a["y"], a["z"]) for a in found.values() if len(a) == 3]


def random_rotations(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)``: a uniformly random axis, an angle uniform in
    ``[-max_deg, max_deg]`` (Rodrigues' formula)."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    theta = np.deg2rad(rng.uniform(-max_deg, max_deg, size=n))[:, None, None]
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= k.transpose(0, 2, 1)
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def rotated(
    X: np.ndarray, groups: Sequence[tuple[int, int, int]], max_deg: float, seed: int
) -> np.ndarray:
    """A copy of windows ``X`` ``(N, T, C)``: each window's axis ``groups`` turned by one random
    rotation of at most ``max_deg`` degrees (the same for every group: one phone, one angle)."""
    return turned(X, groups, random_rotations(len(X), max_deg, np.random.default_rng(seed)))


def turned(X: np.ndarray, groups: Sequence[tuple[int, int, int]], turns: np.ndarray) -> np.ndarray:
    """A copy of windows ``X`` ``(N, T, C)`` with the axis ``groups`` of window ``i`` turned by
    rotation matrix ``turns[i]``."""
    if not groups:
        raise ModelsError("rotation needs x/y/z channels (names ending in x, y and z)")
    out = X.copy()
    turns = turns.astype(X.dtype)
    for group in groups:
        idx = list(group)
        out[:, :, idx] = np.einsum("ntc,nrc->ntr", X[:, :, idx], turns)
    return out
