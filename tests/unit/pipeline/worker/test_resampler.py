"""Devices at other rates than the model's: resampled as they arrive, whatever the record
boundaries, across checkpoints, side by side in one call."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.worker.resampler import Resampler, lowpass_taps
from pipeline.worker.sequencer import DeviceRun

MODEL_HZ = 50.0
T0 = 1.7e12


def _signal(rate, n, hz=(1.0,), channels=2, seq0=0):
    seq = np.arange(seq0, seq0 + n)
    t = seq / rate
    x = np.stack([sum(np.sin(2 * np.pi * f * t + c) for f in hz) for c in range(channels)], 1)
    return seq, x.astype(np.float32), (seq // 37 % 4).astype(np.int16), T0 + t * 1000.0


def _runs(rate, n, chunks, device="d", **kw):
    seq, x, y, t = _signal(rate, n, **kw)
    bounds = np.cumsum([0, *chunks])
    bounds = bounds[bounds < n].tolist() + [n]
    return [DeviceRun(device, seq[a:b], x[a:b], y[a:b], t[a:b], rate_hz=rate)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]  # fmt: skip


def _feed(resampler, runs, slot=0):
    out = []
    for run in runs:
        made, _ = resampler.resample([run], np.array([slot]))
        out += made
    return _joined(out)


def _joined(runs):
    if not runs:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0), np.zeros(0)
    return tuple(np.concatenate([getattr(r, k) for r in runs])
                 for k in ("seqs", "values", "times_ms", "labels"))  # fmt: skip


@pytest.mark.parametrize("rate", [20.0, 33.0, 100.0, 200.0, 400.0])
def test_record_boundaries_change_nothing(rate):
    whole = _feed(Resampler(MODEL_HZ, 2), _runs(rate, 1200, [1200]))
    split = _feed(Resampler(MODEL_HZ, 2), _runs(rate, 1200, [7, 50, 1, 13, 200, 3] * 30))
    for a, b in zip(whole, split, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    seqs, _, times, _ = whole
    delay = (len(lowpass_taps(rate / MODEL_HZ)) - 1) // 2 if rate > 1.5 * MODEL_HZ else 0
    assert len(seqs) == int(((1199 - delay) * MODEL_HZ / rate) + 1e-9) + 1
    np.testing.assert_allclose(np.diff(times), 1000.0 / MODEL_HZ)  # one model step apart
    assert np.all(np.diff(seqs) >= 0) and np.all(T0 + seqs * 1000.0 / rate <= times + 1e-6)


@pytest.mark.parametrize("rate", [20.0, 100.0, 200.0])
def test_values_follow_the_signal_on_the_model_grid(rate):
    seqs, values, times, labels = _feed(Resampler(MODEL_HZ, 2), _runs(rate, 2000, [50] * 40))
    t = (times - T0) / 1000.0
    want = np.stack([np.sin(2 * np.pi * t + c) for c in range(2)], 1)
    settled = slice(2, None)  # the low-pass starts with few samples
    # the filter's delay is taken out of the times; linear interpolation is off by up to
    # (2 pi / rate)^2 / 8
    assert np.abs(values - want)[settled].max() < 0.015
    assert np.array_equal(labels, (seqs // 37 % 4).astype(np.int16))  # in force at each step


def test_fast_motion_is_filtered_before_it_aliases():
    _, values, times, _ = _feed(Resampler(MODEL_HZ, 2), _runs(200.0, 4000, [40] * 100,
                                                                hz=(1.0, 40.0)))  # fmt: skip
    t = (times - T0) / 1000.0
    slow = np.stack([np.sin(2 * np.pi * t + c) for c in range(2)], 1)
    residue = np.abs(values - slow)[8:]
    assert residue.max() < 0.3  # unfiltered: 1.0


def test_devices_side_by_side_equal_each_alone():
    rates = [20.0, 100.0, 200.0, 75.0]
    alone = [_feed(Resampler(MODEL_HZ, 2), _runs(r, 600, [30] * 20, device=f"d{i}"))
             for i, r in enumerate(rates)]  # fmt: skip
    together = Resampler(MODEL_HZ, 2)
    per_device = [_runs(r, 600, [30] * 20, device=f"d{i}") for i, r in enumerate(rates)]
    got: dict[str, list] = {f"d{i}": [] for i in range(len(rates))}
    for batch in zip(*per_device, strict=True):
        made, slots = together.resample(list(batch), np.arange(len(rates)) * 3)
        assert [r.device for r in made] == [f"d{s // 3}" for s in slots.tolist()]
        for r in made:
            got[r.device].append(r)
    for i, want in enumerate(alone):
        for a, b in zip(want, _joined(got[f"d{i}"]), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_a_checkpoint_continues_the_same_grid():
    runs = _runs(100.0, 1000, [23] * 50)
    whole = _feed(Resampler(MODEL_HZ, 2), runs)
    first = Resampler(MODEL_HZ, 2)
    part1 = [r for run in runs[:20] for r in first.resample([run], np.array([5]))[0]]
    restored = Resampler(MODEL_HZ, 2)
    restored.restore(np.array([9]), first.snapshot(np.array([5])))
    part2 = [r for run in runs[20:] for r in restored.resample([run], np.array([9]))[0]]
    for a, b in zip(whole, _joined(part1 + part2), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_the_model_rate_passes_through_and_ends_resampling():
    r = Resampler(MODEL_HZ, 2)
    (fast,) = _runs(100.0, 100, [100])
    r.resample([fast], np.array([0]))
    assert r.snapshot(np.array([0]))[0] is not None
    (same,) = _runs(50.2, 100, [100])
    made, _ = r.resample([same], np.array([0]))
    assert made[0] is same and r.snapshot(np.array([0]))[0] is None


def test_a_short_run_may_not_reach_the_next_model_step():
    r = Resampler(MODEL_HZ, 2)
    runs = _runs(200.0, 6, [1] * 6)
    counts = [len(r.resample([run], np.array([0]))[0]) for run in runs]
    # 200 Hz: one model step every 4 samples, the first once the filter (9 taps) is half full
    assert counts == [0, 0, 0, 0, 1, 0]


def test_a_gap_in_the_sequence_numbers_advances_the_grid():
    seq, x, y, t = _signal(100.0, 400)
    keep = np.r_[0:100, 110:400]  # 10 samples lost
    r = Resampler(MODEL_HZ, 2)
    run = DeviceRun("d", seq[keep], x[keep], y[keep], t[keep], rate_hz=100.0)
    (made,), _ = r.resample([run], np.array([0]))
    np.testing.assert_allclose(np.diff(made.times_ms), 20.0)
    assert len(made.seqs) == 199 and made.seqs[-1] == 396  # the filter holds back 2 samples


@pytest.mark.parametrize("rate", [100.0, 130.0, 200.0])
def test_a_device_starting_with_single_samples_never_yields_nan(rate):
    r = Resampler(MODEL_HZ, 2)
    made = [o for run in _runs(rate, 40, [1] * 40) for o in r.resample([run], np.array([0]))[0]]
    values = _joined(made)[1]
    assert len(values) and np.isfinite(values).all() and np.isfinite(r.last[0]).all()
