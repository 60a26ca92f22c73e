"""What a worker serves: stream models through the NumPy runtime, windows through Keras, and a
clear refusal for what it cannot serve."""

from __future__ import annotations

import numpy as np
import pytest

from models.seq2seq import build_seq2seq
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.exceptions import PipelineError
from pipeline.serving import ServingModel

CHANNELS = ("acc_x", "acc_y", "acc_z")


def _meta(spec: ModelSpec, classes=("SIT", "WALK")) -> ModelMeta:
    return ModelMeta(spec, CHANNELS, classes, 50.0, (0.0,) * 3, (1.0,) * 3, 16, 8)


def test_stream_and_window_models_are_served():
    stream = _meta(ModelSpec(setup="stream", hidden=4))
    served = ServingModel.load(build_model(stream.spec, stream), stream, "s@v1")
    assert served.runtime is not None and served.predict is None
    window = _meta(ModelSpec(hidden=4))
    served = ServingModel.load(build_model(window.spec, window), window, "w@v1")
    assert served.predict(np.zeros((2, 16, 3), np.float32)).shape == (2, 2)


def test_a_seq2seq_model_is_refused_with_a_clear_error():
    meta = _meta(ModelSpec(setup="seq2seq", task="reconstruct", hidden=4), classes=())
    _, model = build_seq2seq(meta.spec, meta)
    with pytest.raises(PipelineError, match="seq2seq anomaly model; workers serve stream"):
        ServingModel.load(model, meta, "a@v1")
