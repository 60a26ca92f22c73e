"""Locating and opening dataset files.

The default data directory is ``$HARSTREAM_DATA_DIR``, else ``shared/data`` beside the checkout
(``<repo>/../shared/data``). The project never needs it for its main job; tests and benchmarks do.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from streams.exceptions import DatasetError

DATA_DIR_ENV = "HARSTREAM_DATA_DIR"
"""Environment variable that overrides the default data directory."""


def data_dir() -> Path:
    """The data directory: ``$HARSTREAM_DATA_DIR`` if set, else ``<repo>/../shared/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


def default_path(name: str) -> Path:
    """The default location of the data file ``name``; it may not exist.

    >>> default_path("uci_har.npz").name
    'uci_har.npz'
    """
    return data_dir() / name


def read_npz(path: str | os.PathLike[str], required: Iterable[str]) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (no pickle); DatasetError if missing or short."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing arrays {', '.join(missing)}")
    return arrays
