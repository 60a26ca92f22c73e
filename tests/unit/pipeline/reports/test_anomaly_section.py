"""The model report's anomaly section, alone, with the quick budget on a few real HAPT users:
every detector scored on every fault, the figures in [0, 1], a command per detector, and the
page's tables and reading rendered from them."""

from __future__ import annotations

import json
import math

import pytest

from models.faults import FAULTS
from pipeline.reports.models_report import (
    ANOMALY_DETECTORS,
    QUICK,
    SECTIONS,
    ZSCORE_COMMAND,
    anomaly_section,
    fingerprint,
    write_markdown,
)

pytestmark = pytest.mark.dataset


def test_quick_anomaly_section_scores_every_detector_on_every_fault(tmp_path):
    figures = anomaly_section(QUICK, tmp_path, tmp_path / "models")
    rows = figures["anomaly"]
    assert list(rows) == list(ANOMALY_DETECTORS) and "zscore" in rows
    for name, row in rows.items():
        for fault in FAULTS:
            for key in ("roc_auc", "recall_at_1pct_fpr"):
                value = row[fault][key]
                assert not math.isnan(value) and 0.0 <= value <= 1.0, (name, fault, key, value)
        assert row["command"].startswith("harstream train") or row["command"] == ZSCORE_COMMAND
    assert (
        "--task forecast --horizon 32 --attention" in rows["seq2seq-forecast-attention"]["command"]
    )
    assert "--setup stream" in rows["next-step"]["command"]
    assert rows["next-step"]["command"].endswith("--next-step")
    assert "--architecture mlp" in rows["mlp-autoencoder"]["command"]
    windows = figures["anomaly_windows"]
    assert set(windows) == set(FAULTS)
    assert all(0 < w["faulty"] < w["windows"] for w in windows.values())
    assert len(list((tmp_path / "models").glob("anomaly-*.keras"))) == 5  # zscore: no model

    json.dumps(figures)  # models.json keeps them as they are
    page = tmp_path / "models.md"
    write_markdown(page, figures, quick=True)
    text = page.read_text()
    assert "## 5. Anomaly detection" in text
    assert "| detector | " + " | ".join(FAULTS) + " |" in text
    assert text.count("| seq2seq-forecast-attention |") == 2  # ROC-AUC and recall tables
    assert "Best detector per fault by ROC-AUC" in text
    assert "anomaly" in SECTIONS and fingerprint("anomaly", QUICK) != fingerprint("phones", QUICK)
