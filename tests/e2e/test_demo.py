"""``harstream demo`` (what ``make demo`` runs): the embedded pipeline end to end."""

from __future__ import annotations

import re

from pipeline.cli import main


def test_demo_runs_the_embedded_pipeline_and_reports_accuracy(capsys):
    code = main(["demo", "--no-live", "--devices", "20", "--duration-s", "20", "--speed", "200",
                 "--delay-ms", "500"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out  # every expected sample was applied
    scores = re.findall(r"│\s+([\d,]+) │\s+(0\.\d+) │", out)
    assert len(scores) == 2, out
    for scored, accuracy in scores:
        assert int(scored.replace(",", "")) > 100
        assert float(accuracy) > 0.5  # far above chance (1/6) on devices the models never saw
    delays = re.findall(r"│\s+(\d+) ms │\s+(0\.\d+) │", out)  # what waiting buys
    assert [d for d, _ in delays] == ["0", "500", "1000", "2000"], out
    assert all(float(a) > 0.5 for _, a in delays)
