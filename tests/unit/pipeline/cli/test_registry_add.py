"""``harstream registry add``: a .keras file becomes the next version, validated on the way in."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus import TINY_META_ARGS, tiny_model_file
from models.registry import Registry
from pipeline.cli import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("add-model"), cell="gru")[2]


def test_add_registers_a_candidate_with_its_metadata_and_source(tmp_path, model_file, capsys):
    root = tmp_path / "registry"
    assert main(["registry", "--root", str(root), "add", "har", str(model_file)]) == 0
    assert capsys.readouterr().out == f"har: registered v0001 from {model_file}\n"
    v = Registry(root).get("har", 1)
    assert v.status == "candidate" and v.meta.spec.cell == "gru"
    assert v.lineage["source"] == str(model_file.resolve())
    assert v.lineage["notes"] == f"added from {model_file}"
    assert v.model_path.read_bytes() == model_file.read_bytes()


def test_add_and_promote_with_the_root_after_the_action(tmp_path, model_file, capsys):
    root = tmp_path / "registry"
    Registry(root).register("har", model_file)
    Registry(root).promote("har", 1)
    argv = ["registry", "add", "har", str(model_file), "--promote", "--root", str(root)]
    assert main([*argv, "--notes", "from the lab"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("har: champion is now v0002, previous v0001\n")
    assert Registry(root).aliases("har") == {"champion": 2, "previous": 1}
    assert Registry(root).get("har", 2).lineage["notes"] == "from the lab"


def test_if_empty_seeds_once(tmp_path, model_file, capsys):
    argv = ["registry", "--root", str(tmp_path), "add", "har", str(model_file), "--promote"]
    assert main([*argv, "--if-empty"]) == 0
    assert main([*argv, "--if-empty"]) == 0
    assert capsys.readouterr().out.endswith(f"har: already registered, {model_file} not added\n")
    assert [v.label for v in Registry(tmp_path).versions("har")] == ["v0001"]
    assert Registry(tmp_path).aliases("har") == {"champion": 1}


def test_refuses_what_safe_mode_would_not_load(tmp_path, capsys):
    import keras

    from models.io import save_model
    from models.spec import ModelMeta, ModelSpec

    model = keras.Sequential(
        [keras.Input((8, 3)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.GRU(2)]
    )
    unsafe = save_model(model, ModelMeta(spec=ModelSpec(cell="gru"), **TINY_META_ARGS),
                        tmp_path / "unsafe.keras")  # fmt: skip
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("hello")
    root = tmp_path / "registry"
    for path, message in ((unsafe, "safe_mode"), (not_a_model, "not a harstream model")):
        assert main(["registry", "--root", str(root), "add", "har", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("harstream: error: ") and message in err
    assert Registry(root).names() == []
