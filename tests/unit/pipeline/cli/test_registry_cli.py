"""``harstream registry``: list, show, promote and rollback through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpus import tiny_model_file
from models.registry import Registry
from pipeline.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("cli-model"), cell="gru")[2]


@pytest.fixture
def root(tmp_path: Path, model_file: Path) -> Path:
    """A registry with har v0001 (champion) and v0002 (a candidate)."""
    registry = Registry(tmp_path / "registry")
    registry.register("har", model_file, {"accuracy": 0.9, "macro_f1": 0.85})
    registry.register("har", model_file, {"accuracy": 0.93}, parent=1, training_data="HAPT")
    registry.promote("har", 1)
    return registry.root


def test_list_prints_a_table_of_versions(root, capsys):
    assert main(["registry", "--root", str(root), "list"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "har" in line and "v000" in line]
    assert len(lines) == 2
    assert "v0001" in lines[0] and "champion" in lines[0] and "0.8500" in lines[0]
    assert "v0002" in lines[1] and "candidate" in lines[1] and "0.9300" in lines[1]
    assert "window-gru-1x4" in lines[1] and "HAPT" in lines[1]


def test_list_json_and_root_after_the_action(root, capsys):
    assert main(["registry", "list", "har", "--json", "--root", str(root)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["version"], r["status"], r["parent"]) for r in rows] == [
        (1, "champion", None),
        (2, "candidate", 1),
    ]
    assert rows[0]["macro_f1"] == 0.85 and rows[1]["macro_f1"] is None


def test_list_of_an_empty_registry(tmp_path, capsys):
    assert main(["registry", "--root", str(tmp_path), "list"]) == 0
    assert "no models registered" in capsys.readouterr().err


def test_root_defaults_to_the_environment(root, capsys, monkeypatch):
    monkeypatch.setenv("HARSTREAM_REGISTRY", str(root))
    assert main(["registry", "list", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_show_defaults_to_the_champion(root, capsys):
    assert main(["registry", "--root", str(root), "show", "har"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("har v0001\n")
    assert "champion" in out and "window-gru-1x4" in out and "x, y, z" in out
    assert "macro_f1" in out and "0.8500" in out


def test_show_a_version_with_its_lineage(root, capsys):
    assert main(["registry", "--root", str(root), "show", "har", "latest"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("har v0002\n")
    assert "parent" in out and "v0001" in out and "HAPT" in out and "candidate" in out


def test_show_json(root, capsys):
    assert main(["registry", "--root", str(root), "show", "har", "v0002", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["status"] == "candidate"
    assert shown["lineage"]["parent"] == 1 and shown["metrics"] == {"accuracy": 0.93}
    assert shown["meta"]["spec"]["cell"] == "gru"


def test_promote_then_rollback_and_forward(root, capsys):
    base = ["registry", "--root", str(root)]
    assert main([*base, "promote", "har", "2"]) == 0
    assert capsys.readouterr().out == "har: champion is now v0002, previous v0001\n"
    assert main([*base, "rollback", "har"]) == 0
    assert capsys.readouterr().out == "har: rolled back; champion is now v0001, previous v0002\n"
    assert main([*base, "rollback", "har"]) == 0
    assert "champion is now v0002" in capsys.readouterr().out
    assert Registry(root).aliases("har") == {"champion": 2, "previous": 1}


def test_errors_are_one_line_and_exit_2(root, capsys):
    base = ["registry", "--root", str(root)]
    Registry(root).reject("har", 2, "worse on walking")
    for argv, message in (
        ([*base, "promote", "har", "2"], "worse on walking"),
        ([*base, "promote", "har", "v0009"], "no version 9"),
        ([*base, "show", "gait"], "no model named 'gait'"),
        ([*base, "list", "gait"], "no model named 'gait'"),
        ([*base, "rollback", "har"], "no previous champion"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("harstream: error: ") and message in err
        assert err.count("\n") == 1
