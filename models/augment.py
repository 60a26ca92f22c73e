"""Training-time augmentation: data seen as a phone worn at another angle would record it.

Every x/y/z group of channels (``total_acc_x/_y/_z``, ``body_gyro_x/_y/_z`` ...) of a window (or
of a stretch of a recording) is turned by the same random rotation, so that the model learns
activities rather than how one user's phone happened to sit on the belt.
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
    ``[-max_deg, max_deg]`` (Rodrigues' formula); from ``max_deg >= 180`` on, rotations uniform
    over all orientations (:func:`uniform_rotations`), which a uniform angle is not."""
    if max_deg >= 180:
        return uniform_rotations(n, rng)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    theta = np.deg2rad(rng.uniform(-max_deg, max_deg, size=n))[:, None, None]
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k -= k.transpose(0, 2, 1)
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def uniform_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` uniformly distributed over all rotations (Haar
    measure): unit quaternions of four normal draws, which are uniform on the 3-sphere.

    >>> r = uniform_rotations(4000, np.random.default_rng(0))
    >>> bool(np.allclose(r @ r.transpose(0, 2, 1), np.eye(3)) and np.allclose(np.linalg.det(r), 1))
    True
    >>> z = r[:, 2, 2]  # z component of the turned +z axis: uniform in [-1, 1]
    >>> bool(abs(z.mean()) < 0.05 and abs(np.mean(z**2) - 1 / 3) < 0.02)
    True
    """
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    ).transpose(2, 0, 1)


def rotated(
    X: np.ndarray | Sequence[np.ndarray],
    groups: Sequence[tuple[int, int, int]],
    max_deg: float,
    seed: int,
) -> np.ndarray | list[np.ndarray]:
    """A copy of windows ``X`` ``(N, T, C)``, or of recordings ``[(n, C), ...]``: the axis
    ``groups`` of each window or recording turned by one random rotation of at most ``max_deg``
    degrees (the same for every group: one phone, one angle)."""
    turns = random_rotations(len(X), max_deg, np.random.default_rng(seed))
    if isinstance(X, np.ndarray):
        return turned(X, groups, turns)
    return [turned(x[None], groups, t[None])[0] for x, t in zip(X, turns, strict=True)]


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
