"""Every argument that can be checked before work starts is checked before work starts: a
one-line ``harstream: error: ...`` and exit code 2, with nothing trained, loaded or written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from models.registry import Registry
from pipeline.cli import main

FLEET = ["--dataset", "synthetic", "--devices", "2", "--duration-s", "10"]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """An existing directory, a file, a generic CSV dataset and a path under a file."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("not a directory")
    csv = tmp_path / "data.csv"
    csv.write_text("device,timestamp,x,label\n" + "".join(
        f"d0,{1000 + 20 * i},0.5,SITTING\n" for i in range(50)))  # fmt: skip
    return {"dir": str(tmp_path / "dir"), "file": str(tmp_path / "file"), "csv": str(csv),
            "under_file": str(tmp_path / "file" / "m.keras"), "tmp": str(tmp_path)}  # fmt: skip


def _refused(argv: list[str], capsys) -> str:
    """The one line ``main(argv)`` printed when it returned 2."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harstream: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--out", "{dir}"], "--out {dir}: is a directory, not a .keras file"),
        (["train", "--out", "{under_file}"], "{file} is a file, not a directory"),
        (["train", "--out", "{tmp}/model.h5"], "must end in .keras"),
        (["train", "--out", "{tmp}/file.keras"], "evaluation directory"),  # {tmp}/file: a file
        (["train", "--setup", "stream", "--window", "32"], "--window applies only to --setup"),
        (["train", "--rotate-deg", "200"], "rotate_deg must be in [0, 180]"),
        (["train", "--tbptt-steps", "50"], "--tbptt-steps applies only to --setup stream"),
        (["train", "--promote"], "--promote applies only with --registry"),
        (["train", "--registry", "{file}"], "is a file, not a registry directory"),
        (["train", "--registry", "{tmp}/r", "--name", "no/slash"], "invalid model name"),
        (["train", "--dataset", "{tmp}/missing.csv"], "missing.csv: no such file"),
        (["train", "--dataset", "{tmp}/data.parquet"], "unknown dataset"),
        (["train", "--dataset", "{csv}", "--devices", "3"], "--devices applies only to --dataset"),
        (["train", "--rate", "100"], "--rate applies only to a CSV/NPZ --dataset"),
        (["train", "--dataset", "{csv}", "--units", "acc=km/h"], "'km/h' is not a unit of"),
        (["train", "--dataset", "{csv}", "--strict", "--max-gap-ms", "100"],
         "--max-gap-ms does not apply with --strict"),  # fmt: skip
        (["train", "--setup", "stream", "--architecture", "mlp"], "unidirectional recurrent"),
        (["evaluate", "--model", "{tmp}/none.keras"], "--model {tmp}/none.keras: no such file"),
        (["evaluate", "--model", "{file}"], "expected a .keras file"),
        (["evaluate", "--registry", "{tmp}/none"], "--registry {tmp}/none: no such directory"),
        (["evaluate", "--registry", "{dir}"], "no model named 'har'"),
        (["evaluate", "--model", "m.keras", "--ref", "3"], "--ref applies only with --registry"),
        (["replay", "--to", "kafka://nowhere"], "expected kafka://HOST:PORT/TOPIC or 'memory'"),
        (["replay", "--ssl-cafile", "{file}"], "--ssl-cafile applies only with --to kafka://"),
        (["replay", "--kafka-client", "confluent"], "--kafka-client applies only with --to kafka://"),
        (["replay", "--to", "kafka://h:9092/t", "--ssl-cafile", "{tmp}/ca"], "no such file"),
        (["replay", "--to", "kafka://h:9092/t", "--sasl-password-env", "HARSTREAM_NO_SUCH_VAR"],
         "$HARSTREAM_NO_SUCH_VAR is not set"),  # fmt: skip
        (["replay", "--drop", "1.5"], "fault probability drop"),
        (["registry", "--root", "{file}", "list"], "--root {file}: is a file"),
        (["registry", "--root", "{tmp}/r", "add", "har", "{tmp}/none.keras"], "no such file"),
        (["registry", "--root", "{tmp}/r", "add", "no/slash", "{file}"], "invalid model name"),
        (["registry", "--root", "{tmp}/r", "rollback", "har", "--control-topic", "c"],
         "--control-topic applies only with --announce"),  # fmt: skip
        # the worker and the trainer say so before they wait for an unreachable cluster
        (["run", "--bootstrap", "127.0.0.1:9", "--stream-model", "{tmp}/none.keras"],
         "[model] stream_model: no such model file"),  # fmt: skip
        (["run", "--bootstrap", "127.0.0.1:9", "--registry", "{dir}"], "no model named 'har'"),
        (["run", "--bootstrap", "127.0.0.1:9"], "no model: give --registry"),
        (["run", "--config", "{tmp}/none.toml"], "none.toml: no such config file"),
        (["trainer", "--bootstrap", "127.0.0.1:9"], "the trainer needs a registry"),
        (["trainer", "--bootstrap", "127.0.0.1:9", "--registry", "{dir}"], "no model named"),
    ],
)  # fmt: skip
def test_refused_before_any_work(argv, expected, places, capsys):
    argv = [a.format(**places) for a in argv]
    if argv[0] in ("train", "evaluate") and "--dataset" not in argv and "--devices" not in argv:
        argv += FLEET
    assert expected.format(**places) in _refused(argv, capsys)
    assert sorted(p.name for p in Path(places["tmp"]).iterdir()) == ["data.csv", "dir", "file"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--users", "2,x"], "argument --users: expected comma-separated integers"),
        (["train", "--window", "0"], "argument --window: must be >= 1"),
        (["train", "--epochs", "0"], "argument --epochs: must be >= 1"),
        (["train", "--time-unit", "min"], "argument --time-unit: invalid choice"),
        (["train", "--rate", "0"], "argument --rate: must be > 0"),
        (["replay", "--gap-prob", "2"], "argument --gap-prob: must be in [0, 1]"),
        (["demo", "--devices", "0"], "argument --devices: must be >= 1"),
        (["demo", "--http-port", "70000"], "argument --http-port: must be a port"),
        (["registry", "promote", "har", "2", "--announce", "nohost"], "expected HOST:PORT"),
        (["bench", "engine", "--devices", "10,0"], "every number must be >= 1"),
        (["bench", "engine", "--cells", "lstm,tcn"], "'tcn': expected some of rnn, lstm, gru"),
        (["bench", "codec", "--repeats", "0"], "argument --repeats: must be >= 1"),
    ],
)
def test_bad_values_are_refused_by_the_parser(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]


def test_promote_with_a_bad_announcement_leaves_the_registry_alone(tmp_path, tiny_model_path,
                                                                   capsys):  # fmt: skip
    registry = Registry(tmp_path / "registry")
    for _ in range(2):
        registry.register("har", tiny_model_path)
    registry.promote("har", 1)
    root = str(registry.root)
    line = _refused(["registry", "--root", root, "promote", "har", "2", "--announce",
                     "127.0.0.1:9", "--ssl-cafile", str(tmp_path / "ca.pem")], capsys)  # fmt: skip
    assert "--ssl-cafile" in line and "no such file" in line
    assert registry.aliases("har") == {"champion": 1}


def test_a_refused_train_imports_no_keras_and_writes_nothing(cli_in_subprocess, tmp_path):
    (tmp_path / "taken").mkdir()
    results = cli_in_subprocess(
        ["train", *FLEET, "--epochs", "1", "--out", "taken"],
        ["train", *FLEET, "--setup", "stream", "--stride", "8"],
        ["evaluate", *FLEET, "--model", "missing.keras"],
    )
    assert [r["code"] for r in results] == [2, 2, 2]
    assert all(len(r["err"].strip().splitlines()) == 1 for r in results)
    assert "--out taken: is a directory" in results[0]["err"]
    assert [r["heavy"] for r in results] == [[], [], []]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert list((tmp_path / "taken").iterdir()) == []


def test_confluent_without_the_extra_is_refused_before_waiting_for_kafka(
    tiny_model_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if it were not installed
    extra = "install the extra: pip install 'harstream[fast]'"
    run = ["run", "--bootstrap", "127.0.0.1:9", "--stream-model", str(tiny_model_path)]
    assert extra in _refused([*run, "--kafka-client", "confluent"], capsys)
    monkeypatch.setenv("HARSTREAM_KAFKA_CLIENT", "confluent")  # [kafka] client, and replay's
    assert extra in _refused(run, capsys)
    assert extra in _refused(["replay", "--to", "kafka://127.0.0.1:9/t", *FLEET], capsys)
