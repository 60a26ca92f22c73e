"""Dataset readers: every source of sensor data becomes a :class:`StreamDataset`.

>>> ds = load_dataset("synthetic", devices=2, duration_s=5)
>>> [s.device for s in ds.streams]
['sim-00000', 'sim-00001']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.datasets.base import DeviceStream, StreamDataset
from streams.datasets.generic import load_generic, save_generic
from streams.datasets.paths import data_dir, default_path
from streams.datasets.splits import HAPT_TEST_USERS, split_by_user
from streams.datasets.synthetic import SyntheticConfig, simulate
from streams.datasets.uci_hapt import HAPT_FILE, REPLAY_T0_MS, load_uci_hapt
from streams.datasets.uci_har import HAR_FILE, HarWindows, load_uci_har
from streams.exceptions import DatasetError

__all__ = [
    "HAPT_TEST_USERS",
    "REPLAY_T0_MS",
    "DeviceStream",
    "HarWindows",
    "StreamDataset",
    "SyntheticConfig",
    "data_dir",
    "dataset_path",
    "default_path",
    "load_dataset",
    "load_generic",
    "load_uci_hapt",
    "load_uci_har",
    "save_generic",
    "simulate",
    "split_by_user",
]


def load_dataset(spec: str, **kw: Any) -> StreamDataset:
    """The dataset named by ``spec``; ``kw`` go to the reader.

    - ``"synthetic"``: :func:`simulate` with ``SyntheticConfig(**kw)``;
    - ``"uci_har"`` or a path ending ``uci_har.npz``: the stitched UCI HAR streams,
      ``split="all"`` (default, both halves; split by user later), ``"train"`` or ``"test"``;
    - ``"uci_hapt"`` or a path ending ``uci_hapt_raw.npz``: the UCI HAPT recordings;
    - any other ``.csv`` / ``.npz`` path: :func:`load_generic` (``channels``, ``activities``,
      ``rate_hz``, ``options``: :class:`~streams.datasets.generic.LoadOptions`).

    The bare names read from :func:`data_dir`. A missing file or an unknown spec raises
    :class:`DatasetError`; an option the reader does not take raises ``TypeError``.
    """
    path = dataset_path(spec)
    if path is None:
        return simulate(SyntheticConfig(**kw))
    if path.name.endswith(HAR_FILE):
        return _har_streams(path, **kw)
    if path.name.endswith(HAPT_FILE):
        return load_uci_hapt(path, **kw)
    return load_generic(path, **kw)


def dataset_path(spec: str) -> Path | None:
    """The file ``spec`` names (None for ``"synthetic"``), checked without reading it: a
    missing file or a format :func:`load_dataset` does not read raises :class:`DatasetError`.

    >>> dataset_path("synthetic") is None
    True
    """
    if spec == "synthetic":
        return None
    named = {"uci_har": default_path(HAR_FILE), "uci_hapt": default_path(HAPT_FILE)}
    path = Path(named.get(spec, spec)).expanduser()
    if path.suffix.lower() not in (".csv", ".npz"):
        raise DatasetError(
            f"unknown dataset {spec!r}: give 'synthetic', 'uci_har', 'uci_hapt' "
            "or the path of a .csv or .npz file"
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return path


def _har_streams(path: Path, split: str = "all") -> StreamDataset:
    windows = load_uci_har(path)
    if split in ("train", "test"):
        return windows.streams(split)
    if split != "all":
        raise DatasetError(f"{path}: split must be 'all', 'train' or 'test', not {split!r}")
    train, test = windows.streams("train"), windows.streams("test")
    return StreamDataset(
        "uci_har", train.channels, train.activities, train.rate_hz, train.streams + test.streams
    )
