"""Small models and data for the model tests (a few ms each)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models.spec import ModelMeta, ModelSpec  # noqa: E402

CHANNELS = ("ax", "ay", "az")
CLASSES = ("SIT", "WALK", "LIE")


@pytest.fixture
def make_meta():
    """Factory of metadata for ``spec`` with a non-trivial normalisation."""

    def make(spec: ModelSpec, window: int = 12) -> ModelMeta:
        return ModelMeta(
            spec=spec,
            channels=CHANNELS,
            classes=CLASSES,
            rate_hz=50.0,
            mean=(0.5, -1.0, 9.81),
            std=(2.0, 0.5, 1.5),
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
