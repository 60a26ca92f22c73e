"""``load_dataset`` dispatch and the default data directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.datasets import load_dataset, save_generic
from streams.datasets.paths import DATA_DIR_ENV, data_dir, default_path
from streams.exceptions import DatasetError

REPO = Path(__file__).resolve().parents[4]


def test_default_data_dir_is_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert data_dir() == REPO.parent / "shared" / "data"
    monkeypatch.setenv(DATA_DIR_ENV, "/elsewhere")
    assert default_path("uci_har.npz") == Path("/elsewhere/uci_har.npz")


def test_synthetic_takes_config_options():
    ds = load_dataset("synthetic", devices=4, duration_s=3, seed=9)
    assert ds.name == "synthetic" and len(ds.streams) == 4
    with pytest.raises(TypeError):
        load_dataset("synthetic", colour="blue")


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_other_files_are_generic(tmp_path: Path, make_fleet, suffix):
    path = tmp_path / f"mine{suffix}"
    save_generic(make_fleet(devices=2), path)
    ds = load_dataset(str(path), activities=("RUN", "SIT", "LIE"))
    assert ds.name == "mine" and len(ds.streams) == 2
    np.testing.assert_array_equal(ds.streams[1].values, make_fleet(devices=2).streams[1].values)


def test_unknown_spec_and_missing_file(tmp_path: Path):
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "uci_har.npz"))
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "fleet.csv"))


@pytest.mark.dataset
def test_uci_by_name_and_by_path(har_windows, hapt):
    har = load_dataset("uci_har")
    assert har.name == "uci_har" and len(har.streams) == 857
    assert len(load_dataset(str(default_path("uci_har.npz")), split="test").streams) == 257
    with pytest.raises(DatasetError, match="split must be"):
        load_dataset("uci_har", split="validation")
    assert load_dataset(str(default_path("uci_hapt_raw.npz"))).n_samples == hapt.n_samples
