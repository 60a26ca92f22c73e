"""``harstream train``'s defaults are the model report's measured recipes: each report row's
command trains as the same command without the flags its setup's recipe sets; the new user's
short command trains the report's GRU; and the quick variant of a row's command runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from models.train_config import RECIPES
from pipeline.cli.commands.train import WINDOW_ONLY, _checked, _given
from pipeline.cli.main import build_parser
from pipeline.cli.main import main as cli

pytestmark = pytest.mark.dataset

REPORT = json.loads((Path(__file__).parents[4] / "docs" / "models.json").read_text())


def _rows() -> list[dict]:
    """Every report row trained by ``harstream train`` on a named dataset."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("command", "")).startswith("harstream train --dataset uci_"):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(REPORT)
    return found


def _settings(command: str, tmp_path: Path):
    """What ``command`` trains: (spec, config, training stride, window, stride)."""
    argv = [*shlex.split(command)[1:], "--out", str(tmp_path / "m.keras")]
    args = build_parser().parse_args(argv)
    spec, config, _ = _checked(args)
    windows = tuple(_given(args, key, WINDOW_ONLY) for key in WINDOW_ONLY)
    return spec, config, args.train_stride, *windows


def _without_recipe(command: str) -> str:
    """``command`` without the flags whose values are its setup's recipe."""
    words = shlex.split(command)
    recipe = RECIPES[words[words.index("--setup") + 1]]
    kept, i = [], 0
    while i < len(words):
        key = words[i].removeprefix("--").replace("-", "_")
        if key in recipe and i + 1 < len(words) and float(words[i + 1]) == recipe[key]:
            i += 2
            continue
        kept.append(words[i])
        i += 1
    return shlex.join(kept)


def test_every_report_row_trains_as_its_command_without_the_recipe_flags(tmp_path):
    rows = _rows()
    assert len(rows) >= 20  # HAR, HAPT, real phones (uci_hapt rows) and the anomaly models
    shortened = 0
    for row in rows:
        short = _without_recipe(row["command"])
        shortened += short != row["command"]
        assert _settings(short, tmp_path) == _settings(row["command"], tmp_path), row["command"]
    assert shortened == len(rows)  # every row uses some of its recipe


def test_a_new_user_s_short_command_trains_the_report_s_gru(tmp_path):
    gru = REPORT["uci_har"]["gru-2x64"]["command"]
    short = ("harstream train --dataset uci_har --setup window --cell gru --layers 2 --hidden 64 "
             "--rotate-deg 20 --frame device")  # fmt: skip
    assert _settings(short, tmp_path) == _settings(gru, tmp_path)


def test_the_quick_variant_of_a_report_command_runs(tmp_path):
    """The report's GRU command, one epoch: trained, evaluated on the official test users."""
    command = REPORT["uci_har"]["gru-2x64"]["command"].replace("--epochs 20", "--epochs 1")
    out = tmp_path / "gru.keras"
    assert cli([*shlex.split(command)[1:], "--out", str(out)]) == 0
    metrics = json.loads((tmp_path / "gru" / "metrics.json").read_text())
    assert out.is_file() and metrics["accuracy"] > 0.6  # one epoch of the 96.7 % model
