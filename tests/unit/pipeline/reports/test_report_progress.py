"""A HAPT section's rows are kept in models.json as each labeller is scored: a run cut short
goes on where it stopped, and the page says which section is being measured again."""

from __future__ import annotations

import json

import pytest

import pipeline.reports.models_report as report
from pipeline.reports.models_report import (
    KEPT_SECTIONS,
    QUICK,
    SECTIONS,
    Progress,
    Trained,
    Unscored,
)


def _row(seed: int) -> dict:
    return {"variant": "ensemble3", "seed": seed, "macro_f1": 0.5, "accuracy": 0.5}


def test_kept_rows_are_found_by_their_unit_and_every_new_one_is_saved():
    saved = []
    progress = Progress([_row(0)], lambda: saved.append(len(progress.rows)))
    assert progress.kept(seed=0) == [_row(0)] and progress.kept(seed=3) == []
    assert progress.keep([_row(3)]) == [_row(3)]
    assert saved == [2] and progress.kept(seed=3) == [_row(3)]


def test_a_run_cut_short_keeps_its_rows_and_the_next_one_goes_on_from_them(tmp_path, monkeypatch):
    out = tmp_path / "models.md"
    argv = ["--quick", "--out", str(out), "--models-dir", str(tmp_path / "models")]
    handed = []

    def cut_short(section, budget, img, saved, trained, progress):
        if section != "hapt_ensemble":
            return {}
        handed.append(list(progress.rows))
        (img / "ensemble.png").write_text(str(len(progress.rows)))  # a plot of the rows so far
        progress.keep([_row(len(progress.rows))])
        if len(progress.rows) < 2:
            raise KeyboardInterrupt  # the sitting ends after one seed
        return {"hapt": {"ensemble3": {"per_seed": progress.rows}}}

    monkeypatch.setattr(report, "_measure", cut_short)
    with pytest.raises(KeyboardInterrupt):
        report.main(argv)
    first = json.loads(out.with_suffix(".json").read_text())
    assert first["_partial"]["hapt_ensemble"]["rows"] == [_row(0)]
    assert "hapt_ensemble" not in first["_sections"]
    img = tmp_path / "img"
    assert (img / "next" / "hapt_ensemble" / "ensemble.png").is_file()  # the page's stays
    assert not (img / "ensemble.png").exists()
    assert report.main([*argv, "--render"]) == 0
    assert "- hapt_ensemble: being measured for the first time" in out.read_text()

    assert report.main(argv) == 0  # goes on: seed 0 is handed back, seed 1 is scored
    assert handed == [[], [_row(0)]]
    done = json.loads(out.with_suffix(".json").read_text())
    assert "_partial" not in done and set(done["_sections"]) == set(SECTIONS)
    assert done["hapt"]["ensemble3"]["per_seed"] == [_row(0), _row(1)]
    assert (img / "ensemble.png").read_text() == "1" and not (img / "next").exists()


def test_a_kept_only_run_trains_no_labeller_and_keeps_what_it_scored_for_the_next(
    tmp_path, monkeypatch
):
    out = tmp_path / "models.md"
    argv = ["--quick", "--out", str(out), "--models-dir", str(tmp_path / "models")]
    asked = []

    def first_seed_only(section, budget, img, saved, trained, progress):
        asked.append(section)
        assert trained.trains == frozenset()
        progress.keep([_row(0)])
        trained.get("the labeller of seed 3")  # not kept: raises
        raise AssertionError("unreachable")

    monkeypatch.setattr(report, "_measure", first_seed_only)
    assert report.main([*argv, "--kept-only"]) == 0
    assert asked == list(KEPT_SECTIONS)  # the others train without the store: not looked at
    figures = json.loads(out.with_suffix(".json").read_text())
    assert set(figures["_partial"]) == set(KEPT_SECTIONS) and "_sections" not in figures
    assert all(p["rows"] == [_row(0)] for p in figures["_partial"].values())
    with pytest.raises(Unscored):
        Trained(tmp_path, trains=frozenset()).get("anything")
    with pytest.raises(SystemExit):
        report.main([*argv, "--kept-only", "--only", "hapt"])


def test_the_page_names_a_section_being_measured_again(tmp_path):
    out = tmp_path / "models.md"
    rows = [_row(0), {**_row(0), "variant": "ensemble3_hmm"}, _row(3)]
    results = {
        "_partial": {"hapt_ensemble": {"fingerprint": "f", "rows": rows}},
        "_sections": {"hapt": {"measured": "then", "minutes": 1, "machine": "m"}},
    }
    report.write_markdown(out, results, quick=True, stale=["hapt", "hapt_ensemble"])
    text = out.read_text()
    assert (
        "- hapt_ensemble: being measured for the first time; 3 rows scored so far (seeds 0, 3)"
        in text
    )
    assert "- hapt: being measured again (its code or settings changed); nothing scored" in text


@pytest.mark.dataset
def test_a_section_whose_seeds_are_all_kept_trains_nothing(tmp_path):
    trained = Trained(tmp_path)
    kept = [_row(0), {**_row(0), "variant": "ensemble3_hmm"}]
    assert report.hapt_ensemble_section(QUICK, trained, Progress(list(kept))) == kept
    assert not list(tmp_path.iterdir())


@pytest.mark.dataset
def test_the_refine_section_trains_no_refiner_for_a_delay_kept(tmp_path):
    kept = [{**_row(0), "variant": f"ensemble3_refined_2000ms{x}", "delay_ms": 2000}
            for x in ("", "_mixed")]  # --quick: seed 0 at 2 s only  # fmt: skip
    assert report.hapt_refine_section(QUICK, Trained(tmp_path), Progress(list(kept))) == kept
    assert not list(tmp_path.iterdir())  # no labeller either
    other = [{**r, "delay_ms": 1000} for r in kept]  # another delay's: 2 s is still to do
    finder = Trained(tmp_path, trains=frozenset())
    assert report.hapt_refine_section(QUICK, finder, Progress(list(other))) == []
    assert len(finder.missing) == 1  # its labeller, which this run may not train


def test_a_training_process_trains_its_labellers_in_the_order_dealt(tmp_path, monkeypatch):
    seen = []

    def record(section, budget, img, saved, trained, progress):
        seen.append((section, trained.trains, trained.only_trains))
        return {}

    monkeypatch.setattr(report, "_measure", record)
    argv = ["--quick", "--out", str(tmp_path / "models.md"), "--models-dir", str(tmp_path)]
    assert report.main([*argv, "--train", "hapt-e6,hapt-w0"]) == 0
    per_labeller = list(report.PER_LABELLER)
    assert seen == [(s, frozenset({n}), True) for n in ("hapt-e6", "hapt-w0") for s in per_labeller]
