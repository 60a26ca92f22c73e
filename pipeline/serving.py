"""What a worker serves: the ``[model]`` settings and a model as the worker runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models.exceptions import ModelsError
from models.hmm import ForwardFilter
from models.refiner_runtime import RefinerRuntime
from models.runtime import StreamRuntime
from models.spec import ModelMeta


@dataclass(frozen=True)
class ServingConfig:
    """The ``[model]`` settings: which models a worker serves.

    The registry's ``ref`` (``champion`` by default) of ``name``, or ``.keras`` files: a stream
    (many-to-many) model overrides the registry, a window (many-to-one) model runs beside it.
    An anomaly detector (a seq2seq model) runs beside them too: the file ``anomaly_model``, or
    the registry's champion of ``anomaly_name``. ``follow``: while serving the registry's
    champions, swap to each new one (``[swap]``); the trainer's announcements on
    ``control_topic`` wake the worker at once.
    """

    registry: str | None = None
    name: str = "har"
    ref: str = "champion"
    stream_model: str | None = None
    window_model: str | None = None
    anomaly_model: str | None = None
    anomaly_name: str | None = None
    follow: bool = True
    control_topic: str = "har.control"

    @property
    def follows_champion(self) -> bool:
        """True when the worker should hot-swap to each new champion of ``name``."""
        return bool(self.registry and self.follow and not self.stream_model
                    and self.ref == "champion")  # fmt: skip

    @property
    def follows_detector(self) -> bool:
        """True when the worker should hot-swap to each new champion of ``anomaly_name``."""
        return bool(self.registry and self.follow and self.anomaly_name
                    and not self.anomaly_model)  # fmt: skip


@dataclass
class ServingModel:
    """A model as a worker serves it: its version, metadata and the thing that runs it."""

    version: str
    meta: ModelMeta
    runtime: StreamRuntime | None = None
    """for a stream (many-to-many) model"""
    predict: Callable[[np.ndarray], np.ndarray] | None = None
    """for a window (many-to-one) model: (M, window, C) raw windows -> (M, classes)"""
    score: Callable[[np.ndarray], np.ndarray] | None = None
    """for an anomaly detector (seq2seq): (M, span, C) raw windows -> (M,) anomaly scores"""
    decoder: ForwardFilter | None = None
    """for a stream model whose grammar helped on its validation users: the HMM forward filter
    its per-sample probabilities go through (:mod:`models.hmm`), a belief per device"""
    refiner: RefinerRuntime | None = None
    """for a stream model saved with a refiner (:mod:`models.refine`): its labels of the sample
    ``lag`` back, mixed by a worker delayed as much with the smoother's"""

    @classmethod
    def load(cls, model, meta: ModelMeta, version: str, capacity: int = 1024,
             refiner: tuple | None = None) -> ServingModel:  # fmt: skip
        """Wrap a loaded Keras model: the NumPy runtime for stream models (and for the
        ``refiner``, its model and metadata, of one that has one: :func:`models.io.load_refiner`),
        Keras for window models and anomaly detectors."""
        if meta.spec.setup == "stream":
            grammar = meta.grammar
            decoder = grammar.decoder(capacity) if grammar and grammar.enabled else None
            if refiner is not None and grammar is None:
                raise ModelsError(f"{version}: a refiner reads the HMM beliefs of a grammar, "
                                  "and this model has none")  # fmt: skip
            refined = RefinerRuntime.from_keras(*refiner, grammar, capacity) if refiner else None
            return cls(version, meta, runtime=StreamRuntime.from_keras(model, meta, capacity),
                       decoder=decoder, refiner=refined)  # fmt: skip
        if meta.spec.setup == "seq2seq":
            from models.seq2seq import scorer  # Keras: the caller loaded a model already

            return cls(version, meta, score=scorer(model, meta))
        return cls(version, meta, predict=lambda x: np.asarray(model.predict_on_batch(x)))

    @property
    def slot(self) -> str:
        """Which of a worker's models this is: ``stream``, ``window`` or ``anomaly``."""
        return {"stream": "stream", "window": "window", "seq2seq": "anomaly"}[self.meta.spec.setup]

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
        if self.score is not None:
            self.score(np.zeros((1, self.meta.span, channels), np.float32))


class Served(NamedTuple):
    """The models a worker serves: at least one classifier, and optionally a detector."""

    stream: ServingModel | None = None
    window: ServingModel | None = None
    anomaly: ServingModel | None = None
