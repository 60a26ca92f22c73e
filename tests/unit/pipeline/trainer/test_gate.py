"""The gate scores stream models the way workers run them: each held-out device's windows joined
into one recording, the state carried across them; refuses a non-finite candidate. Anomaly
detectors are judged by their mean error on the held-out windows, in the champion's units."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.seq2seq import anomaly_scores, build_seq2seq
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.exceptions import ConfigError
from pipeline.trainer.buffer import Windows
from pipeline.trainer.gate import (
    GateConfig,
    detector_errors,
    detector_windows,
    holdout_accuracy,
    judge,
    judge_detector,
    scores,
)

SPEC = ModelSpec(setup="stream", cell="rnn", hidden=1)
META = ModelMeta(spec=SPEC, channels=("x",), classes=("still", "after_marker"), rate_hz=50.0,
                 mean=(0.0,), std=(1.0,), window=8, stride=1)  # fmt: skip


def _rnn(recurrent: float, bias: tuple[float, float] = (0.0, -5.0)):
    """h = tanh(10 x + recurrent h); class 1 when h > 0.5 (``recurrent`` 3: a latch that
    stays set once a marker sample x = 1 went by; 0 with ``bias`` (0, 5): always class 1)."""
    model = build_model(SPEC, META)
    weights = [[[10.0]], [[recurrent]], [0.0], [[0.0, 10.0]], list(bias)]
    model.set_weights([np.asarray(w, np.float32) for w in weights])
    return model


@pytest.fixture
def holdout():
    """Device a: a marker in its first window, then class 1 for three windows; device b:
    class 0 for one window. Windows do not overlap."""
    values = np.zeros((4, 8, 1), np.float32)
    values[0, 0, 0] = 1.0
    labels = np.ones((4, 8), np.int16)
    labels[3] = 0
    return Windows(("a", "a", "a", "b"), values, labels)


def test_a_stream_model_is_scored_with_its_state_carried_across_a_devices_windows(holdout):
    latch = _rnn(recurrent=3.0)
    hits, scored, _ = scores(latch, META, holdout)  # from a zero state in every window
    assert hits.sum() / scored.sum() == 0.5
    assert holdout_accuracy(latch, META, holdout) == (1.0, True)


def test_the_gate_promotes_a_candidate_that_uses_the_state_a_worker_keeps(holdout):
    always_one = _rnn(recurrent=0.0, bias=(0.0, 5.0))
    verdict = judge(_rnn(recurrent=3.0), always_one, META, holdout, GateConfig(margin=0.1))
    assert verdict.promote and verdict.code == "better"
    assert (verdict.candidate_accuracy, verdict.champion_accuracy) == (1.0, 0.75)


def test_a_candidate_with_a_non_finite_weight_is_refused(holdout):
    broken = _rnn(recurrent=3.0)
    broken.set_weights([w * np.nan for w in broken.get_weights()])
    verdict = judge(broken, _rnn(0.0), META, holdout)
    assert not verdict.promote and verdict.code == "non_finite_weights"


DETECTOR = ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=3)
DETECTOR_META = ModelMeta(spec=DETECTOR, channels=("x", "y"), classes=(), rate_hz=50.0,
                          mean=(0.5, -1.0), std=(2.0, 0.5), window=6, stride=3)  # fmt: skip


@pytest.fixture
def series():
    """Two devices of two non-overlapping 12-sample windows each."""
    values = np.random.default_rng(0).normal(size=(4, 12, 2)).astype(np.float32)
    return Windows(("a", "a", "b", "b"), values, np.full((4, 12), -1, np.int16))


def test_a_detector_s_error_is_measured_in_the_champion_s_units(series):
    rescaled = replace(DETECTOR_META, mean=(0.0, 0.0), std=(1.0, 4.0))
    model = build_seq2seq(DETECTOR, rescaled)[1]
    X = detector_windows(DETECTOR_META, series)
    assert X.shape == (2 * 7, 6, 2)  # each device's 24 samples, every 3 samples
    raw = model.predict(X, verbose=0) * rescaled.std + rescaled.mean
    expected = np.mean(np.square((raw - X) / DETECTOR_META.std), axis=(1, 2))
    measured = detector_errors(model, rescaled, X, units=DETECTOR_META)
    np.testing.assert_allclose(measured, expected, rtol=1e-4)
    own = detector_errors(model, rescaled, X)  # in its own units: its anomaly score
    np.testing.assert_allclose(own, anomaly_scores(model, rescaled, X), rtol=1e-5)


def test_a_detector_candidate_must_lower_the_error_by_the_margin(series):
    model = build_seq2seq(DETECTOR, DETECTOR_META)[1]
    args = (model, DETECTOR_META, model, DETECTOR_META, series)
    same = judge_detector(*args)  # the champion itself: not lower
    assert not same.promote and same.code == "not_better"
    assert same.candidate_error == same.champion_error and same.holdout_windows == 4
    assert judge_detector(*args, GateConfig(error_margin=-0.01)).promote
    broken = build_seq2seq(DETECTOR, DETECTOR_META)[1]
    broken.set_weights([w * np.nan for w in broken.get_weights()])
    refused = judge_detector(broken, DETECTOR_META, model, DETECTOR_META, series)
    assert not refused.promote and refused.code == "non_finite_weights"
    assert "candidate_error" in refused.to_dict()
    with pytest.raises(ConfigError, match="error_margin"):
        GateConfig(error_margin=1.0)
