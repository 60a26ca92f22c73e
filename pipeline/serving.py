"""What a worker serves: the ``[model]`` settings and a model as the worker runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.runtime import StreamRuntime
from models.spec import ModelMeta
from pipeline.exceptions import PipelineError


@dataclass(frozen=True)
class ServingConfig:
    """The ``[model]`` settings: which models a worker serves.

    The registry's ``ref`` (``champion`` by default) of ``name``, or ``.keras`` files: a stream
    (many-to-many) model overrides the registry, a window (many-to-one) model runs beside it.
    ``follow``: while serving the registry's champion, swap to each new one (``[swap]``); the
    trainer's announcements on ``control_topic`` wake the worker at once.
    """

    registry: str | None = None
    name: str = "har"
    ref: str = "champion"
    stream_model: str | None = None
    window_model: str | None = None
    follow: bool = True
    control_topic: str = "har.control"

    @property
    def follows_champion(self) -> bool:
        """True when the worker should hot-swap to each new champion."""
        return bool(self.registry and self.follow and not self.stream_model
                    and self.ref == "champion")  # fmt: skip


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
        """Wrap a loaded Keras model: the NumPy runtime for stream models, Keras for windows.
        Seq2seq (anomaly) models are not served yet: :class:`PipelineError`."""
        if meta.spec.setup == "seq2seq":
            raise PipelineError(
                f"{version}: {meta.spec.name} is a seq2seq anomaly model; workers serve stream "
                "and window classifiers only"
            )
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
