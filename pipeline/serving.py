"""A model as a worker serves it: its version, metadata and what runs it (no TensorFlow here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.runtime import StreamRuntime
from models.spec import ModelMeta


@dataclass
class ServingModel:
    """A model as a worker serves it: its version, metadata and the thing that runs it."""

    version: str
    meta: ModelMeta
    runtime: StreamRuntime | None = None
    """for a stream (many-to-many) model"""
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    """for a window (many-to-one) model: (M, window, C) raw windows -> (M, classes)"""

    @classmethod
    def load(cls, model, meta: ModelMeta, version: str, capacity: int = 1024) -> ServingModel:
        """Wrap a loaded Keras model: the NumPy runtime for stream models, Keras for windows."""
        if meta.spec.setup == "stream":
            return cls(version, meta, runtime=StreamRuntime.from_keras(model, meta, capacity))
        return cls(version, meta, predict=lambda x: np.asarray(model.predict_on_batch(x)))

    def warm(self) -> None:
        """Run once on zeros, so that the first real batch pays no set-up cost."""
        channels = len(self.meta.channels)
        if self.runtime is not None:
            probe = self.runtime.capacity - 1
            state = self.runtime.get_state(probe)
            self.runtime.advance([probe], [2], np.zeros((2, channels), np.float32))
            self.runtime.set_state(probe, state)
        if self.predict is not None:
            self.predict(np.zeros((1, self.meta.window, channels), np.float32))
