"""The simulated fleet: deterministic, gappy, and with activities a model can tell apart."""

from __future__ import annotations

import numpy as np
import pytest

from streams.datasets import SyntheticConfig, simulate, split_by_user
from streams.datasets.synthetic import SHAPES, SYNTHETIC_CHANNELS
from streams.exceptions import DatasetError

SMALL = SyntheticConfig(devices=12, duration_s=120, seed=3)


@pytest.fixture(scope="module")
def fleet():
    return simulate(SMALL)


def _pooled(ds):
    values = np.concatenate([s.values for s in ds.streams])
    labels = np.concatenate([s.labels for s in ds.streams])
    return values, labels


def test_shapes_names_and_dtypes(fleet):
    assert fleet.channels == SYNTHETIC_CHANNELS
    assert fleet.activities == (
        "WALKING",
        "WALKING_UPSTAIRS",
        "WALKING_DOWNSTAIRS",
        "SITTING",
        "STANDING",
        "LAYING",
    )
    assert fleet.rate_hz == 50.0
    assert len(fleet.streams) == 12
    assert len({s.device for s in fleet.streams}) == 12
    for s in fleet.streams:
        assert s.values.dtype == np.float32 and s.values.shape == (s.n, 6)
        assert s.labels.dtype == np.int16
        assert s.labels.min() >= 0 and s.labels.max() < 6
        assert s.sequence()[0] == 0 and s.sequence()[-1] < 120 * 50
        assert np.isfinite(s.values).all()
    starts = {s.t0_ms for s in fleet.streams}
    assert len(starts) == 12
    assert min(starts) >= SMALL.t0_ms and max(starts) <= SMALL.t0_ms + 5000


def test_same_seed_same_fleet_other_seed_differs(fleet):
    again = simulate(SMALL)
    other = simulate(SyntheticConfig(devices=12, duration_s=120, seed=4))
    for a, b in zip(fleet.streams, again.streams, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.sequence(), b.sequence())
        assert (a.t0_ms, a.user) == (b.t0_ms, b.user)
    assert not np.array_equal(fleet.streams[0].values[:100], other.streams[0].values[:100])


def test_gaps_are_jumps_in_strictly_increasing_seq(fleet):
    jumps = [np.diff(s.sequence()) for s in fleet.streams]
    assert all((j > 0).all() for j in jumps)
    gaps = np.concatenate([j[j > 1] - 1 for j in jumps])
    assert gaps.size > 0  # ~6 per device-minute at gap_prob 0.001
    assert gaps.max() <= SMALL.gap_len[1] * 2  # two gaps can touch, rarely more
    no_gaps = simulate(SyntheticConfig(devices=3, duration_s=30, gap_prob=0.0))
    assert all(s.seq is not None and s.n == 1500 for s in no_gaps.streams)


def test_every_activity_occurs_and_segments_last_the_dwell(fleet):
    _, labels = _pooled(fleet)
    assert set(np.unique(labels).tolist()) == set(range(6))
    s = fleet.streams[0]
    full = np.full(s.sequence()[-1] + 1, -1)
    full[s.sequence()] = s.labels
    changes = np.flatnonzero(np.diff(full[full >= 0])) + 1
    lengths = np.diff(changes) / 50.0
    assert lengths.size > 0 and lengths.min() >= 8.0 - 0.5 and lengths.max() <= 40.0 + 0.5


def test_activities_are_distinguishable(fleet):
    values, labels = _pooled(fleet)
    acc_mag = np.linalg.norm(values[:, :3], axis=1)
    gyro_mag = np.linalg.norm(values[:, 3:], axis=1)
    name = dict(enumerate(fleet.activities))
    mag_std = {name[a]: acc_mag[labels == a].std() for a in range(6)}
    gyro = {name[a]: gyro_mag[labels == a].mean() for a in range(6)}
    mean = {name[a]: values[labels == a, :3].mean(0) for a in range(6)}

    assert abs(acc_mag.mean() - 1.0) < 0.05  # gravity is 1 g, as in HAPT
    for moving in ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS"):
        for still in ("SITTING", "STANDING", "LAYING"):
            assert mag_std[moving] > 5 * mag_std[still]
            assert gyro[moving] > 5 * gyro[still]
    assert mag_std["WALKING_DOWNSTAIRS"] > 1.3 * mag_std["WALKING"]
    assert mag_std["WALKING"] > 1.1 * mag_std["WALKING_UPSTAIRS"]
    # Static postures differ by where gravity points: +x standing, y/z laying.
    assert mean["STANDING"][0] > 0.9
    assert mean["LAYING"][0] < 0.3 and np.hypot(*mean["LAYING"][1:]) > 0.8
    assert np.linalg.norm(mean["SITTING"] - mean["STANDING"]) > 0.3
    # The gait cadence of walking shows as a spectral peak near 2 Hz.
    s = fleet.streams[int(np.argmax([(x.labels == 0).sum() for x in fleet.streams]))]
    x = s.values[s.labels == 0, 0][:1024]
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    assert 1.5 < np.fft.rfftfreq(x.size, 1 / 50)[np.argmax(spectrum)] < 2.3


def test_users_cycle_and_split_by_user():
    ds = simulate(SyntheticConfig(devices=35, duration_s=2, users=30))
    assert [s.user for s in ds.streams][:3] == [1, 2, 3]
    assert ds.streams[30].user == 1 and ds.users == tuple(range(1, 31))
    train, test = split_by_user(ds, (2, 4))
    assert {s.user for s in test.streams} == {2, 4} and len(test.streams) == 4
    assert len(train.streams) == 31


def test_activity_subset_and_bad_configs():
    ds = simulate(SyntheticConfig(devices=2, duration_s=20, activities=("LAYING", "WALKING")))
    assert ds.activities == ("LAYING", "WALKING")
    with pytest.raises(DatasetError, match="activities must be distinct names"):
        SyntheticConfig(activities=("JUMPING",))
    with pytest.raises(DatasetError, match="dwell_s"):
        SyntheticConfig(dwell_s=(10.0, 5.0))
    with pytest.raises(DatasetError, match="gap_len"):
        SyntheticConfig(gap_len=(0, 3))
    assert set(SHAPES) >= set(SyntheticConfig().activities)
