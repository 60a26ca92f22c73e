"""The model report's kept HAPT labellers: one kept model per training, shared by the sections
that train it, trained again when kept before a named section's run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.training import TrainResult
from models.zoo import build_model
from pipeline.reports.models_report import Trained, Unscored, _lanes


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


def test_a_run_trains_only_its_own_labellers_and_lists_the_others_it_needs(tmp_path):
    name = Trained(tmp_path)._path("lstm, seed 1").stem
    mine = Trained(tmp_path, trains=frozenset({name}))
    assert mine.get("lstm, seed 1") is None  # its own: to be trained
    with pytest.raises(Unscored):
        mine.get("lstm, seed 2")
    assert list(mine.missing.values()) == ["lstm, seed 2"]


def test_a_training_process_scores_nothing_it_keeps_or_trains(tmp_path):
    only = Trained(tmp_path, only_trains=True)
    assert only.get("lstm, seed 0") is None
    with pytest.raises(Unscored):
        only.put("lstm, seed 0", _result())  # saved, then left to the main run
    assert Trained(tmp_path).get("lstm, seed 0") is not None
    with pytest.raises(Unscored):
        only.get("lstm, seed 0")


def test_labellers_are_dealt_longest_first_to_the_least_loaded_process():
    missing = {"e0": "ModelSpec(members=3)", "t0": "ModelSpec(members=1)",
               "t1": "ModelSpec(members=1)", "t2": "ModelSpec(members=1)",
               "w0": "ModelSpec(members=1)"}  # fmt: skip
    assert _lanes(missing, 2) == [["e0", "w0"], ["t0", "t1", "t2"]]  # loads 4 and 3
    assert _lanes({"t0": "members=1"}, 3) == [["t0"]]
