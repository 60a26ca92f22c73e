"""Model registry: numbered versions, atomic aliases, promote/rollback, rejection, lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import harstream
from corpus import TINY_META_ARGS, tiny_model_file
from models.exceptions import ModelsError
from models.io import read_meta
from models.registry import Registry
from models.spec import ModelMeta, ModelSpec

META = ModelMeta(spec=ModelSpec(hidden=4), **TINY_META_ARGS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    """A tiny LSTM window model and the .keras file it was saved to."""
    model, meta, path = tiny_model_file(tmp_path_factory.mktemp("model"))
    return model, path


@pytest.fixture
def model_file(tiny) -> Path:
    return tiny[1]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def _register(registry: Registry, model_file: Path, count: int, name: str = "har") -> None:
    for _ in range(count):
        registry.register(name, model_file)


def test_versions_are_numbered_from_one_with_their_files(registry, model_file):
    first = registry.register("har", model_file, {"accuracy": 0.9, "macro_f1": 0.8})
    _register(registry, model_file, 2)
    assert [v.version for v in registry.versions("har")] == [1, 2, 3]
    assert registry.names() == ["har"]
    assert first.path == registry.root / "har" / "v0001"
    assert sorted(p.name for p in first.path.iterdir()) == [
        "lineage.json",
        "meta.json",
        "metrics.json",
        "model.keras",
    ]
    assert first.model_path.read_bytes() == model_file.read_bytes()
    assert first.meta == read_meta(model_file) == META
    assert first.metrics == {"accuracy": 0.9, "macro_f1": 0.8}
    assert first.status == "candidate" and first.aliases == ()
    assert not [p for p in (registry.root / "har").iterdir() if p.name.startswith(".staging")]


def test_lineage_records_parent_data_time_and_code(registry, model_file):
    registry.register("har", model_file)
    v = registry.register(
        "har", model_file, parent=1, training_data="UCI HAR subjects 1-21", notes="more dropout"
    )
    lineage = json.loads((v.path / "lineage.json").read_text())
    assert lineage == v.lineage
    assert lineage["parent"] == 1
    assert lineage["training_data"] == "UCI HAR subjects 1-21"
    assert lineage["notes"] == "more dropout"
    assert lineage["source"] == str(model_file.resolve())
    assert lineage["created_at"].endswith("Z") and lineage["created_at"][:2] == "20"
    assert lineage["code"]["harstream"] == harstream.__version__
    if "git_commit" in lineage["code"]:
        assert len(lineage["code"]["git_commit"]) == 40
    with pytest.raises(ModelsError, match="no version 9"):
        registry.register("har", model_file, parent=9)


def test_numpy_metrics_are_stored_as_plain_json(registry, model_file):
    v = registry.register(
        "har", model_file, {"accuracy": np.float32(0.5), "confusion": np.eye(2, dtype=int)}
    )
    assert v.metrics == {"accuracy": 0.5, "confusion": [[1, 0], [0, 1]]}


def test_promote_rollback_and_roll_forward(registry, model_file):
    _register(registry, model_file, 3)
    assert registry.aliases("har") == {}
    assert registry.promote("har", 1).status == "champion"
    assert registry.aliases("har") == {"champion": 1}
    with pytest.raises(ModelsError, match="no previous"):
        registry.rollback("har")
    registry.promote("har", "v0003")
    assert registry.aliases("har") == {"champion": 3, "previous": 1}
    assert registry.promote("har", 3).version == 3  # promoting the champion changes nothing
    assert registry.aliases("har") == {"champion": 3, "previous": 1}
    assert [v.status for v in registry.versions("har")] == ["previous", "candidate", "champion"]

    back = registry.rollback("har")
    assert back.version == 1 and back.status == "champion"
    assert registry.aliases("har") == {"champion": 1, "previous": 3}
    assert registry.rollback("har").version == 3  # and forward again
    assert registry.aliases("har") == {"champion": 3, "previous": 1}


def test_aliases_file_is_replaced_atomically(registry, model_file):
    _register(registry, model_file, 2)
    assert registry.champion_stamp("har") == (None, 0)
    registry.promote("har", 1)
    path = registry.root / "har" / "aliases.json"
    inode = path.stat().st_ino
    stamp = registry.champion_stamp("har")
    assert stamp == (1, path.stat().st_mtime_ns)
    registry.promote("har", 2)
    assert json.loads(path.read_text()) == {"champion": 2, "previous": 1}
    assert path.stat().st_ino != inode  # a new file took the old one's place
    assert path.stat().st_mode & 0o777 == 0o644
    assert registry.champion_stamp("har")[0] == 2
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_rejected_version_is_never_promoted(registry, model_file):
    _register(registry, model_file, 3)
    rejected = registry.reject("har", 2, "macro F1 0.61 < champion 0.74")
    assert rejected.status == "rejected"
    assert rejected.rejected["reason"] == "macro F1 0.61 < champion 0.74"
    assert json.loads((rejected.path / "rejected.json").read_text()) == rejected.rejected
    with pytest.raises(ModelsError, match="rejected"):
        registry.promote("har", 2)
    assert registry.aliases("har") == {}
    with pytest.raises(ModelsError, match="reason"):
        registry.reject("har", 3, " ")

    registry.promote("har", 1)
    with pytest.raises(ModelsError, match="champion"):
        registry.reject("har", 1, "too late")
    registry.promote("har", 3)
    registry.reject("har", 1, "found a leak in its training data")
    with pytest.raises(ModelsError, match="rejected"):
        registry.rollback("har")
    assert registry.aliases("har") == {"champion": 3, "previous": 1}


def test_get_by_number_label_latest_and_alias(registry, model_file):
    _register(registry, model_file, 3)
    registry.promote("har", 2)
    assert registry.get("har").version == 3
    assert registry.get("har", "latest").version == 3
    assert registry.get("har", 1).version == 1
    assert registry.get("har", "v0001").version == 1
    assert registry.get("har", "1").version == 1
    assert registry.get("har", "champion").version == 2
    assert registry.get("har", "champion").aliases == ("champion",)
    with pytest.raises(ModelsError, match="no version 7; it has v0001..v0003"):
        registry.get("har", 7)
    with pytest.raises(ModelsError, match="no alias 'previous'"):
        registry.get("har", "previous")
    with pytest.raises(ModelsError, match="no model named 'gait'"):
        registry.get("gait")


def test_unknown_and_invalid_names(registry, model_file):
    assert registry.names() == []
    for call in (registry.versions, registry.aliases, registry.rollback, registry.load):
        with pytest.raises(ModelsError):
            call("../escape")
    for call in (registry.versions, registry.rollback, lambda n: registry.promote(n, 1)):
        with pytest.raises(ModelsError, match="no model named 'nope'"):
            call("nope")
    with pytest.raises(ModelsError, match="invalid model name"):
        registry.register(".hidden", model_file)


def test_load_gives_the_same_predictions(registry, tiny):
    model, model_file = tiny
    registry.register("har", model_file)
    registry.promote("har", 1)
    loaded, meta = registry.load("har")
    x = np.random.default_rng(0).normal(size=(5, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert meta == META
    with pytest.raises(ModelsError, match="no alias 'previous'"):
        registry.load("har", "previous")


def test_files_that_are_not_harstream_models_are_rejected_before_writing(registry, tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a zip")
    bare = tmp_path / "bare.keras"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("config.json", "{}")
    for path in (text, bare, tmp_path / "missing.keras"):
        with pytest.raises(ModelsError):
            registry.register("har", path)
    assert not registry.root.exists()


def test_concurrent_registrations_get_distinct_versions(registry, model_file):
    start = threading.Barrier(2)
    got: list[list[int]] = [[], []]

    def worker(i: int) -> None:
        start.wait()
        for _ in range(4):
            got[i].append(registry.register("har", model_file).version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got[0] + got[1]) == list(range(1, 9))
    assert [v.version for v in registry.versions("har")] == list(range(1, 9))
    assert [p.name for p in (registry.root / "har").iterdir() if p.name.startswith(".")] == []


def test_a_version_number_taken_meanwhile_is_skipped(registry, model_file, monkeypatch):
    """Another process publishes v0001 between our listing and our rename."""
    real_rename, raced = os.rename, []

    def racing_rename(src, dst):
        if not raced:
            raced.append(0)  # the other registration renames for real
            raced[0] = registry.register("har", model_file, notes="the other one").version
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", racing_rename)
    mine = registry.register("har", model_file, notes="mine")
    assert raced == [1] and mine.version == 2 and mine.lineage["notes"] == "mine"
    assert registry.get("har", 1).lineage["notes"] == "the other one"


def test_reading_the_registry_does_not_import_keras():
    code = "import sys, models.registry; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
