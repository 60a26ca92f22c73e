"""The gate scores stream models the way workers run them: each held-out device's windows joined
into one recording, the state carried across them; refuses a non-finite candidate."""

from __future__ import annotations

import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.trainer.buffer import Windows
from pipeline.trainer.gate import GateConfig, holdout_accuracy, judge, scores

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
