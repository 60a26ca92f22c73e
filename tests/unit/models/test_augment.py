"""Rotation augmentation: whole sensors turned rigidly, one random rotation per window."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import axis_groups, random_rotations, rotated, uniform_rotations
from models.exceptions import ModelsError


def test_random_rotations_are_rotations_within_the_angle():
    r = random_rotations(500, 20.0, np.random.default_rng(0))
    identity = np.broadcast_to(np.eye(3), r.shape)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), identity, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    angles = np.degrees(np.arccos(np.clip((np.trace(r, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 20.0 + 1e-6 and angles.max() > 15.0  # the whole range is used


def test_uniform_rotations_cover_every_orientation_evenly():
    r = uniform_rotations(20000, np.random.default_rng(0))
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    # every turned axis (a column) uniform on the sphere: components of mean 0 and mean square 1/3
    np.testing.assert_allclose(r.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose((r**2).mean(axis=0), 1 / 3, atol=0.01)
    # from 180 degrees on, random_rotations draws these: a uniform angle about a uniform axis
    # would leave +z near +z on average (mean z of the turned +z axis 1/3, not 0)
    np.testing.assert_array_equal(
        random_rotations(50, 180.0, np.random.default_rng(1)),
        uniform_rotations(50, np.random.default_rng(1)),
    )
    angle_uniform = random_rotations(20000, 179.9, np.random.default_rng(0))
    assert abs(angle_uniform[:, 2, 2].mean() - 1 / 3) < 0.02


def test_rotated_turns_each_sensor_rigidly_and_leaves_other_channels():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(64, 16, 7)).astype(np.float32)
    groups = axis_groups(["acc_x", "acc_y", "acc_z", "light", "gyro_x", "gyro_y", "gyro_z"])
    assert groups == [(0, 1, 2), (4, 5, 6)]
    out = rotated(X, groups, 30.0, seed=2)
    assert out.dtype == X.dtype and not np.allclose(out, X)
    np.testing.assert_array_equal(out[:, :, 3], X[:, :, 3])  # not an axis: untouched
    for g in groups:  # lengths kept sample by sample: a rotation, not a rescaling
        np.testing.assert_allclose(
            np.linalg.norm(out[:, :, list(g)], axis=-1), np.linalg.norm(X[:, :, list(g)], axis=-1),
            rtol=1e-5,
        )  # fmt: skip
    # one rotation per window, shared by its sensors: the angle between acc and gyro is kept
    dot = lambda A: np.sum(A[:, :, 0:3] * A[:, :, 4:7], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dot(out), dot(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out, rotated(X, groups, 30.0, seed=2))  # seeded
    np.testing.assert_allclose(rotated(X, groups, 0.0, seed=2), X, atol=1e-6)
    recordings = rotated([X[0], X[1, :5]], groups, 30.0, seed=2)  # or recordings, one turn each
    np.testing.assert_array_equal(recordings[0], rotated(X[:2], groups, 30.0, seed=2)[0])
    assert recordings[1].shape == (5, 7)


def test_rotation_needs_axes():
    with pytest.raises(ModelsError, match="x/y/z"):
        rotated(np.zeros((2, 4, 2), np.float32), axis_groups(["a", "b"]), 10.0, seed=0)
