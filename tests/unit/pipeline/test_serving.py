"""What a worker serves: stream models through the NumPy runtime, window models and anomaly
detectors through Keras."""

from __future__ import annotations

import numpy as np

from models.seq2seq import anomaly_scores, build_seq2seq
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
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


def test_a_seq2seq_model_is_served_as_an_anomaly_detector():
    meta = _meta(ModelSpec(setup="seq2seq", task="forecast", horizon=4, hidden=4), classes=())
    _, model = build_seq2seq(meta.spec, meta)
    served = ServingModel.load(model, meta, "a@v1")
    assert served.slot == "anomaly" and served.runtime is None and served.predict is None
    windows = np.random.default_rng(0).normal(size=(5, meta.span, 3)).astype(np.float32)
    np.testing.assert_allclose(served.score(windows), anomaly_scores(model, meta, windows),
                               rtol=0, atol=1e-6)  # fmt: skip
