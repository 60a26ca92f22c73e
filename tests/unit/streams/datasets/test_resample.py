"""Irregular device timestamps onto a regular grid: repeats, jitter, pauses, other rates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.datasets import load_generic
from streams.datasets.generic import LoadOptions
from streams.datasets.resample import detect_time_unit, regularise


def _jittery(rate_hz: float, seconds: float, seed: int = 0, jitter_ms: float = 1.5):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds * 1000.0, 1000.0 / rate_hz)
    return np.sort(t + rng.normal(0, jitter_ms, t.size))


def _sine(t_ms: np.ndarray, hz: float) -> np.ndarray:
    return np.sin(2 * np.pi * hz * t_ms / 1000.0)[:, None].astype(np.float32)


def test_a_jittery_100_hz_signal_lands_on_the_50_hz_grid():
    t = _jittery(100, 10)
    seq, v, _, info = regularise(t, _sine(t, 2.0), np.zeros(t.size, np.int16), 50.0)
    grid = t[0] + seq * 20.0
    assert np.all(np.diff(seq) == 1) and info.samples_out == seq.size == 500
    np.testing.assert_allclose(v[1:-1, 0], _sine(grid, 2.0)[1:-1, 0], atol=0.02)  # edges held
    assert info.filtered and not info.kept and info.native_hz == pytest.approx(100, rel=0.02)


def test_repeated_timestamps_are_merged_into_their_mean_and_last_label():
    t = np.array([0.0, 20.0, 20.0, 20.0, 40.0, 60.0])
    x = np.array([0, 1, 2, 3, 4, 5], np.float32)[:, None]
    y = np.array([0, 0, 0, 1, 1, 1], np.int16)
    seq, v, labels, info = regularise(t, x, y, 50.0)
    assert info.repeats == 2 and seq.tolist() == [0, 1, 2, 3]
    assert v[:, 0].tolist() == [0, 2, 4, 5] and labels.tolist() == [0, 1, 1, 1]


def test_a_long_pause_is_a_gap_and_a_short_one_is_interpolated():
    t = np.r_[np.arange(0, 1000, 20.0), np.arange(1100, 2000, 20.0), np.arange(2600, 3000, 20.0)]
    t[1:] += np.random.default_rng(0).uniform(-3, 3, t.size - 1)  # off the grid
    x = (t / 1000.0)[:, None].astype(np.float32)  # a ramp: interpolation is exact
    seq, v, _, info = regularise(t, x, np.zeros(t.size, np.int16), 50.0, max_gap_ms=300)
    assert info.gaps == 1
    jumps = np.flatnonzero(np.diff(seq) > 1)
    assert jumps.size == 1 and seq[jumps[0]] in (98, 99) and seq[jumps[0] + 1] in (130, 131)
    np.testing.assert_allclose(v[:, 0], seq * 0.02, atol=1e-6)  # 1000-1100 ms filled in
    assert 55 in seq.tolist()


def test_labels_are_the_ones_in_force_at_each_grid_point():
    t = np.array([0.0, 7.0, 19.0, 33.0, 41.0, 58.0, 61.0])
    y = np.array([0, 0, 1, 1, 2, 2, 2], np.int16)
    seq, _, labels, _ = regularise(t, np.zeros((7, 1), np.float32), y, 50.0)
    assert seq.tolist() == [0, 1, 2, 3] and labels.tolist() == [0, 1, 1, 2]


def test_fast_motion_does_not_alias_into_the_slower_grid():
    t = _jittery(200, 10, jitter_ms=0.3)
    signal = _sine(t, 2.0) + _sine(t, 40.0)  # 40 Hz would fold to 10 Hz at 50 Hz
    seq, v, _, info = regularise(t, signal, np.zeros(t.size, np.int16), 50.0)
    residue = (v[:, 0] - _sine(t[0] + seq * 20.0, 2.0)[:, 0])[2:-2]  # edges held
    assert info.filtered and np.abs(residue).max() < 0.1  # unfiltered: about 1.0


def test_a_stream_on_the_grid_is_kept_sample_for_sample_with_its_gaps():
    t = np.round(np.delete(np.arange(300), [10, 11, 50]) * 1000 / 30)  # 30 Hz in whole ms
    x = np.arange(t.size, dtype=np.float32)[:, None]
    seq, v, _, info = regularise(t, x, np.zeros(t.size, np.int16), 30.0)
    assert info.kept and v[:, 0].tolist() == x[:, 0].tolist()
    assert seq.tolist() == np.delete(np.arange(300), [10, 11, 50]).tolist()


def test_slower_devices_are_upsampled_without_a_filter():
    t = _jittery(20, 5)
    seq, v, _, info = regularise(t, _sine(t, 0.5), np.zeros(t.size, np.int16), 50.0)
    assert not info.filtered and info.samples_out == pytest.approx(250, abs=2)
    np.testing.assert_allclose(v[:, 0], _sine(t[0] + seq * 20.0, 0.5)[:, 0], atol=0.01)


@pytest.mark.parametrize(("unit", "scale"), [("s", 1e-3), ("ms", 1.0), ("us", 1e3), ("ns", 1e6)])
def test_time_units_are_detected_and_give_the_same_dataset(tmp_path: Path, unit, scale):
    t = _jittery(100, 3)
    assert detect_time_unit(t * scale, [np.arange(t.size)]) == unit
    path = tmp_path / f"{unit}.npz"
    np.savez(path, device=np.full(t.size, "d"), timestamp=(1.7e12 + t) * scale,
             acc_x=_sine(t, 1.0)[:, 0])  # fmt: skip
    (stream,) = load_generic(path, rate_hz=50).streams
    (given,) = load_generic(path, options=LoadOptions(rate_hz=50, time_unit=unit)).streams
    assert stream.n == given.n == 150
    np.testing.assert_allclose(stream.values, given.values)


def test_the_dataset_says_what_was_resampled(tmp_path: Path):
    t = np.r_[_jittery(100, 2), _jittery(200, 2, seed=1)]
    dev = np.repeat(["a", "b"], [200, 400])
    path = tmp_path / "two.npz"
    np.savez(path, device=dev, timestamp=t, acc_x=np.zeros(t.size))
    ds = load_generic(path, rate_hz=50)
    a, b = ds.resampling.devices
    assert (a.native_hz, b.native_hz) == (
        pytest.approx(100, rel=0.05),
        pytest.approx(200, rel=0.05),
    )
    assert [s.n for s in ds.streams] == [100, 100] and ds.rate_hz == 50
    assert any("2 of 2 devices resampled to 50 Hz" in note for note in ds.notes)


def test_strict_keeps_refusing_timestamps_off_the_grid(tmp_path: Path):
    path = tmp_path / "j.npz"
    np.savez(path, device=np.full(4, "d"), timestamp=[0, 20, 20, 40], acc_x=np.zeros(4))
    assert load_generic(path, rate_hz=50).streams[0].n == 3
    with pytest.raises(Exception, match="repeats sample 1"):
        load_generic(path, options=LoadOptions(rate_hz=50, strict=True))


def test_units_are_detected_declared_and_converted(tmp_path: Path):
    t = np.arange(0, 2000, 20.0)
    z = np.full(t.size, 9.80665)
    path = tmp_path / "ms2.npz"
    np.savez(path, device=np.full(t.size, "d"), timestamp=t, acc_x=0 * z, acc_y=0 * z, acc_z=z)
    detected = load_generic(path)
    np.testing.assert_allclose(detected.streams[0].values[:, 2], 1.0, rtol=1e-6)
    assert "converted to acc=g" in detected.notes[0]
    from streams.units import Units

    declared = load_generic(path, options=LoadOptions(units=Units("g")))  # taken at its word
    np.testing.assert_allclose(declared.streams[0].values[:, 2], 9.80665, rtol=1e-6)
