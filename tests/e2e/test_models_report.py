"""The model report script runs end to end (``--quick``: tiny trainings on the real data)."""

from __future__ import annotations

import json

import pytest

from pipeline.reports.models_report import main

pytestmark = pytest.mark.dataset


def test_quick_report_writes_tables_and_plots(tmp_path):
    out = tmp_path / "docs" / "models.md"
    assert main(["--quick", "--out", str(out), "--models-dir", str(tmp_path / "models")]) == 0
    text = out.read_text()
    assert "--quick run" in text
    for heading in ("UCI HAR, many-to-one", "UCI HAPT, many-to-many", "Vanishing gradients"):
        assert heading in text
    for model in ("LSTM", "GRU", "SimpleRNN", "BiLSTM", "MLP", "1-D CNN", "LSTM, no rotation"):
        assert f"| {model}" in text
    img = out.parent / "img"
    assert (img / "vanishing-gradients.png").is_file() and (img / "hapt-tbptt.png").is_file()
    report = json.loads((img / "report.json").read_text())
    assert len(report["har"]) == 7 and len(report["hapt"]) == 2
    assert all(len(r["thirds"]) == 3 and len(r["long_thirds"]) == 3 for r in report["hapt"])
    assert {r["variant"] for r in report["hapt"]} == {"tbptt", "windows"}
    assert "Medians over seeds, truncated BPTT against fixed windows" in text
    assert (img / "har-window-lstm-2x64-unrotated.png").is_file()
    assert len(list((tmp_path / "models").glob("*.keras"))) == 9
