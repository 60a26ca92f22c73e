"""Fixtures for the dataset readers: the real files (session-scoped) and small made-up fleets."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from streams.datasets import HarWindows, StreamDataset, load_uci_hapt, load_uci_har
from streams.datasets.base import DeviceStream
from streams.datasets.paths import default_path


def _require(name: str) -> None:
    if not default_path(name).is_file():
        pytest.fail(
            f"{default_path(name)} not present: put the datasets in ../shared/data beside the "
            "checkout or set HARSTREAM_DATA_DIR (or deselect these tests with -m 'not dataset')"
        )


@pytest.fixture(scope="session")
def har_windows() -> HarWindows:
    _require("uci_har.npz")
    return load_uci_har()


@pytest.fixture(scope="session")
def hapt() -> StreamDataset:
    _require("uci_hapt_raw.npz")
    return load_uci_hapt()


@pytest.fixture
def make_fleet() -> Callable[..., StreamDataset]:
    """Factory of a small fleet: gaps, users, unlabelled samples, a comma in device ids."""

    def make(devices: int = 3, n: int = 40, rate_hz: float = 50.0) -> StreamDataset:
        rng = np.random.default_rng(7)
        streams = []
        for i in range(devices):
            steps = np.ones(n, np.int64)
            steps[rng.choice(np.arange(1, n), 3, replace=False)] = rng.integers(2, 6, 3)  # gaps
            seq = np.cumsum(steps) + i  # not starting at 0
            labels = rng.integers(-1, 3, n).astype(np.int16)
            values = rng.normal(size=(n, 2)).astype(np.float32)
            streams.append(
                DeviceStream(
                    f"dev,{i}",  # a comma, to exercise CSV quoting
                    values,
                    labels,
                    rate_hz,
                    t0_ms=1_700_000_000_000 + 1000 * i,
                    user=i + 1,
                    seq=seq.astype(np.int64),
                )
            )
        return StreamDataset("fleet", ("ax", "gz"), ("RUN", "SIT", "LIE"), rate_hz, tuple(streams))

    return make
