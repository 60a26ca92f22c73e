"""The phone export made from UCI HAPT reads back, resampled, as the recordings it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.reports.phone_export import PhoneExport, export
from streams.datasets import load_generic, load_uci_hapt
from streams.datasets.generic import write_columns
from streams.datasets.paths import default_path

pytestmark = pytest.mark.dataset


@pytest.fixture(scope="module")
def hapt_two_users():
    if not default_path("uci_hapt_raw.npz").is_file():
        pytest.fail("uci_hapt_raw.npz not present: put the datasets in ../shared/data")
    return load_uci_hapt().select_users([2, 4])


def _on_the_source_grid(stream, source):
    """The source recording's values and labels at the resampled stream's grid times."""
    t = stream.t0_ms + stream.sequence() * 1000.0 / stream.rate_hz - source.t0_ms
    src_t = source.sequence() * 1000.0 / source.rate_hz
    values = np.stack([np.interp(t, src_t, source.values[:, c]) for c in range(6)], 1)
    labels = source.labels[np.clip(np.searchsorted(src_t, t, side="right") - 1, 0, None)]
    return values, labels


@pytest.mark.parametrize("rotate", [False, True])
def test_the_export_reads_back_as_its_recordings(tmp_path: Path, hapt_two_users, rotate):
    columns = export(hapt_two_users, PhoneExport(max_seconds=60, rotate=rotate, seed=3))
    path = tmp_path / "phone.csv"
    write_columns(columns, path)
    data = load_generic(path, rate_hz=50, activities=hapt_two_users.activities)

    assert "converted to acc=g" in data.notes[0]
    info = data.resampling
    assert info.time_unit == "ms" and all(d.filtered for d in info.devices)
    assert sum(d.repeats for d in info.devices) > 0.05 * sum(d.samples_in for d in info.devices)
    for stream, source in zip(data.streams, hapt_two_users.streams, strict=True):
        want, labels = _on_the_source_grid(stream, source)
        assert np.mean(stream.labels == labels) > 0.99
        norm = np.linalg.norm(stream.values[:, :3], axis=1) - np.linalg.norm(want[:, :3], axis=1)
        assert np.sqrt(np.mean(norm**2)) < 0.02  # g: rotation keeps |a|
        if not rotate:
            error = np.sqrt(np.mean((stream.values - want) ** 2, axis=0)) / want.std(axis=0)
            assert error.max() < 0.2, error
        else:
            assert np.abs(stream.values[:, :3] - want[:, :3]).mean() > 0.1
