"""Evaluation metrics against hand-computed values, and the confusion PNG; anomaly-score
metrics (ROC-AUC, recall at a false-positive rate) by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import evaluate, plot_confusion, recall_at_fpr, roc_auc
from models.exceptions import ModelsError


def test_metrics_by_hand():
    #          true: A A A B B C  (and one unannotated)
    e = evaluate([0, 0, 0, 1, 1, 2, -1], [0, 0, 1, 1, 2, 2, 0], ("A", "B", "C"))
    assert e.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert e.accuracy == pytest.approx(4 / 6)
    np.testing.assert_allclose(e.precision, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(e.recall, [2 / 3, 0.5, 1.0])
    f1 = [0.8, 0.5, 2 / 3]
    np.testing.assert_allclose(e.f1, f1)
    assert e.macro_f1 == pytest.approx(np.mean(f1))
    d = e.to_dict()
    assert d["samples"] == 6 and d["per_class"]["C"]["support"] == 1
    assert "macro-F1 0.6556" in e.to_text()


def test_absent_class_is_left_out_of_macro_f1():
    e = evaluate([0, 0, 1], [0, 0, 1], ("A", "B", "C"))
    assert e.macro_f1 == 1.0 and e.support.tolist() == [2, 1, 0]


def test_bad_inputs():
    with pytest.raises(ModelsError):
        evaluate([0, 1], [0], ("A", "B"))
    with pytest.raises(ModelsError):
        evaluate([0, 3], [0, 1], ("A", "B"))


def test_confusion_png(tmp_path):
    e = evaluate([0, 1, 1, 2], [0, 1, 2, 2], ("SIT", "WALK", "LIE"))
    path = plot_confusion(e, tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_gradient_norms_cover_every_step_and_plot(make_meta, raw_batch, tmp_path):
    from models.diagnostics import input_gradient_norms, plot_gradient_norms
    from models.spec import ModelSpec
    from models.zoo import build_model

    curves = {}
    for cell in ("rnn", "lstm", "gru"):
        spec = ModelSpec(cell=cell, hidden=8)
        model = build_model(spec, make_meta(spec))
        norms = input_gradient_norms(model, raw_batch, np.array([0, 1, 2, 0]))
        assert norms.shape == (12,) and np.all(np.isfinite(norms)) and norms[-1] > 0
        curves[cell] = norms
    png = plot_gradient_norms(curves, tmp_path / "g.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_roc_auc_by_hand():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0  # perfectly separated
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0  # reversed
    assert roc_auc(np.full(4, 0.3), labels) == 0.5  # all tied
    # pairs (positive, negative): 3 > 1, 3 > 2, 2 = 2 (half), 2 > 1 -> 3.5 / 4
    assert roc_auc(np.array([1.0, 2.0, 2.0, 3.0]), np.array([0, 0, 1, 1])) == 0.875
    # unsorted, unbalanced: positive 5 beats 3 negatives, positive 0 beats none -> 3 / 6
    assert roc_auc(np.array([5.0, 1.0, 0.0, 2.0, 3.0]), np.array([1, 0, 1, 0, 0])) == 0.5
    assert np.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))


def test_recall_at_fpr_thresholds_at_the_clean_scores_quantile():
    clean = np.arange(100, dtype=np.float64)  # 1 % of them exceed 98.01, the 0.99 quantile
    faulty = np.array([50.0, 98.5, 99.5, 200.0])
    scores = np.concatenate([clean, faulty])
    labels = np.r_[np.zeros(100), np.ones(4)]
    assert recall_at_fpr(scores, labels) == 0.75
    assert recall_at_fpr(scores, labels, fpr=0.6) == 1.0  # threshold 39.6
    assert recall_at_fpr(np.array([1.0, 1.0, 1.0]), np.array([0, 0, 1])) == 0.0  # a tie is not
    assert np.isnan(recall_at_fpr(np.array([1.0]), np.array([0])))
