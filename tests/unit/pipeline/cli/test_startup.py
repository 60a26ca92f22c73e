"""A CLI that starts fast: help and the light commands never import TensorFlow, Keras,
matplotlib or a Kafka client library (each is imported only where a model is built, trained,
loaded or plotted, or a Kafka client made)."""

from __future__ import annotations

from models.registry import Registry

COMMANDS = ("demo", "run", "replay", "train", "evaluate", "registry", "trainer", "bench")
REGISTRY_ACTIONS = ("list", "show", "promote", "rollback", "add")
BENCHES = ("codec", "engine", "e2e", "swap", "recovery")


def _imported_heavy(results: list[dict]) -> list[tuple[list[str], list[str]]]:
    """(argv, heavy packages imported by then) for every command that imported one."""
    return [(r["argv"], r["heavy"]) for r in results if r["heavy"]]


def test_help_of_every_command_imports_no_tensorflow(cli_in_subprocess):
    argvs = [
        ["--help"],
        *([command, "--help"] for command in COMMANDS),
        *(["registry", action, "--help"] for action in REGISTRY_ACTIONS),
        *(["bench", bench, "--help"] for bench in BENCHES),
    ]
    results = cli_in_subprocess(*argvs)
    assert [(r["argv"], r["code"]) for r in results] == [(argv, 0) for argv in argvs]
    assert all("usage: harstream" in r["out"] for r in results)
    assert _imported_heavy(results) == []


def test_light_commands_import_no_tensorflow(cli_in_subprocess, tmp_path, tiny_model_path):
    registry = Registry(tmp_path / "registry")
    registry.register("har", tiny_model_path, {"accuracy": 0.9})
    results = cli_in_subprocess(
        ["registry", "--root", str(tmp_path / "empty"), "list"],
        ["registry", "--root", str(registry.root), "list", "--json"],
        ["registry", "--root", str(registry.root), "show", "har"],
        ["replay", "--devices", "2", "--duration-s", "5", "--json"],
        ["bench", "codec", "--records", "20", "--repeats", "1", "--json"],
    )
    assert [r["code"] for r in results] == [0] * 5, [r["err"] for r in results]
    assert "no models registered" in results[0]["err"]
    assert '"version": 1' in results[1]["out"] and results[2]["out"].startswith("har v0001\n")
    assert '"devices_mismatched": 0' in results[3]["out"] and '"codec"' in results[4]["out"]
    assert _imported_heavy(results) == []
