"""Small models and data for the model tests (a few ms each)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models.spec import ModelMeta, ModelSpec  # noqa: E402

CHANNELS = ("ax", "ay", "az")
PHONE = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
"""the channels of a gravity-frame model, whose normalisation is of its five features"""
CLASSES = ("SIT", "WALK", "LIE")


@pytest.fixture
def make_meta():
    """Factory of metadata for ``spec`` with a non-trivial normalisation."""

    def make(spec: ModelSpec, window: int = 12) -> ModelMeta:
        gravity = spec.frame == "gravity"
        return ModelMeta(
            spec=spec,
            channels=PHONE if gravity else CHANNELS,
            classes=CLASSES,
            rate_hz=50.0,
            mean=(1.0, 0.2, 0.9, 0.0, 0.5) if gravity else (0.5, -1.0, 9.81),
            std=(0.3, 0.2, 0.1, 0.5, 0.4) if gravity else (2.0, 0.5, 1.5),
            window=window,
            stride=window // 2,
            provenance={"test": True},
        )

    return make


@pytest.fixture
def raw_batch():
    """Raw (un-normalised) samples: (4, 12, 3) float32."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(4, 12, 3)) * (2.0, 0.5, 1.5) + (0.5, -1.0, 9.81)).astype(np.float32)
