"""The model report script runs end to end (``--quick``: tiny trainings on the real data)."""

from __future__ import annotations

import json

import pytest

from models.faults import FAULTS
from pipeline.reports.models_report import ANOMALY_DETECTORS, SECTIONS, main

pytestmark = pytest.mark.dataset


@pytest.mark.timeout(900)  # the whole quick report, then the phones section again (~9 min)
def test_quick_report_writes_tables_plots_and_figures_and_runs_again_only_what_it_is_told(
    tmp_path,
):
    out = tmp_path / "docs" / "models.md"
    argv = ["--quick", "--out", str(out), "--models-dir", str(tmp_path / "models")]
    assert main([*argv, "--jobs", "2"]) == 0  # the HAPT labellers: two processes side by side
    text = out.read_text()
    assert "--quick run" in text
    for heading in ("UCI HAR, many-to-one", "UCI HAPT, many-to-many", "Vanishing gradients",
                    "Real phones", "Anomaly detection"):  # fmt: skip
        assert heading in text
    for model in ("LSTM", "GRU", "SimpleRNN", "BiLSTM", "MLP", "1-D CNN", "LSTM, no rotation",
                  "LSTM + attention", "GRU + attention", "GRU, ensemble of 3", "causal_hmm",
                  "ensemble3_hmm"):  # fmt: skip
        assert f"| {model}" in text
    img = out.parent / "img"
    assert (img / "vanishing-gradients.png").is_file() and (img / "hapt-tbptt.png").is_file()
    assert (img / "har-attention.png").is_file()
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["_sections"]) == set(SECTIONS) and "_partial" not in figures
    assert len(figures["uci_har"]) == 10 and {
        "lstm-2x64",
        "attention-gru-2x64",
        "gru-2x64-ensemble3",
    } <= set(figures["uci_har"])
    assert "--members 3" in figures["uci_har"]["gru-2x64-ensemble3"]["command"]
    delays = {f"{p}delay_{ms}ms{x}" for p in ("", "ensemble3_") for ms in (500, 1000, 2000)
              for x in ("", "_mean")}  # as served, and the centred mean  # fmt: skip
    assert set(figures["hapt"]) == {"tbptt", "windows", "causal", "causal_hmm", "ensemble3",
                                    "ensemble3_hmm", *delays, "ensemble3_refined_2000ms",
                                    "ensemble3_refined_2000ms_mixed"}  # fmt: skip
    (refined,) = figures["hapt"]["ensemble3_refined_2000ms"]["per_seed"]  # --quick: 2 s only
    assert refined["refiner_epochs"] == 1 and 0 <= refined["macro_f1"] <= 1
    assert refined["command"].endswith("--members 2 --refine-delay-ms 2000")  # trains both
    assert "Learning the delay" in text and "| 2 s |" in text
    assert figures["hapt"]["delay_2000ms"]["per_seed"][0]["delay_ms"] == 2000
    assert figures["hapt"]["delay_2000ms_mean"]["per_seed"][0]["smoother"] == "mean"
    assert {r["smoother"] for r in figures["hapt"]["delay_500ms"]["per_seed"]} <= {"hmm", "mean"}
    assert (img / "hapt-delay.png").is_file() and "| delay_1000ms | 1 s |" in text
    assert "best none measured over three (--quick)" in text  # targets need three seeds
    assert figures["hapt"]["ensemble3"]["per_seed"][0]["members"] == 2  # --quick: 2 members
    decoded = figures["hapt"]["causal_hmm"]["per_seed"]
    assert all(0 <= r["macro_f1"] <= 1 and r["temperature"] > 0 for r in decoded)
    hapt_rows = [r for v in ("tbptt", "windows") for r in figures["hapt"][v]["per_seed"]]
    assert all(len(r["thirds"]) == 3 and len(r["long_thirds"]) == 3 for r in hapt_rows)
    assert len(figures["real_phones"]) == 8  # 2 models x 4 ways (3 on raw axes, 1 gravity)
    assert all(0 <= r["macro_f1"] <= 1 for r in figures["real_phones"].values())
    rows = [*figures["uci_har"].values(), *hapt_rows, *figures["real_phones"].values()]
    assert all(r["command"].startswith(("harstream train", "python -m")) for r in rows)
    assert all("--frame " in r["command"] for r in rows)
    anomaly = figures["anomaly"]
    assert set(anomaly) == set(ANOMALY_DETECTORS) and "zscore" in anomaly
    assert all(0 <= anomaly[d][f][k] <= 1 for d in anomaly for f in FAULTS
               for k in ("roc_auc", "recall_at_1pct_fpr"))  # fmt: skip
    assert all(r["command"].startswith(("harstream train", "n/a")) for r in anomaly.values())
    assert "Best detector per fault by ROC-AUC" in text
    assert "Medians over seeds, truncated BPTT against fixed windows" in text
    assert (img / "har-window-lstm-2x64-unrotated.png").is_file()
    # HAR 7 + 2 attention + 1 ensemble, HAPT 2 (decoding saves none), anomaly 5 (no zscore)
    assert len(list((tmp_path / "models").glob("*.keras"))) == 10 + 2 + 5

    # again: every section is kept (nothing changed); --only runs the named one again
    measured = {k: v["measured"] for k, v in figures["_sections"].items()}
    assert main(argv) == 0
    again = json.loads(out.with_suffix(".json").read_text())
    assert {k: v["measured"] for k, v in again["_sections"].items()} == measured
    assert again["uci_har"] == figures["uci_har"]
    assert main([*argv, "--only", "phones"]) == 0
    phones = json.loads(out.with_suffix(".json").read_text())
    assert phones["uci_har"] == figures["uci_har"] and phones["hapt"] == figures["hapt"]
    assert phones["_sections"]["phones"]["measured"] > measured["phones"]
