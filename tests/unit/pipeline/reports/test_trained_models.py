"""The model report's kept HAPT labellers: one kept model per training, shared by the sections
that train it, trained again when kept before a named section's run."""

from __future__ import annotations

import time

import numpy as np

from models.spec import ModelMeta, ModelSpec
from models.training import TrainResult
from models.zoo import build_model
from pipeline.reports.models_report import Trained


def _result() -> TrainResult:
    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    meta = ModelMeta(spec, ("x", "y", "z"), ("a", "b"), 50.0, (0.0,) * 3, (1.0,) * 3, 128, 1)
    history = {"loss": [0.9, 0.5], "val_accuracy": [0.6, 0.7]}
    return TrainResult(build_model(spec, meta), meta, history, 12.5, (1, 3), (5,))


def test_a_kept_model_comes_back_with_its_history_for_the_same_training_only(tmp_path):
    trained, result = Trained(tmp_path), _result()
    assert trained.get("lstm, seed 0") is None
    trained.put("lstm, seed 0", result)
    kept = trained.get("lstm, seed 0")
    assert kept is not None and trained.get("lstm, seed 1") is None
    for mine, theirs in zip(kept.model.get_weights(), result.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert kept.meta == result.meta and kept.history == result.history
    assert kept.seconds == 12.5 and list(kept.train_users) == [1, 3]


def test_a_model_kept_before_a_named_sections_run_is_trained_again(tmp_path):
    Trained(tmp_path).put("lstm, seed 0", _result())
    assert Trained(tmp_path, since=time.time() + 60).get("lstm, seed 0") is None
    assert Trained(tmp_path, since=time.time() - 60).get("lstm, seed 0") is not None
