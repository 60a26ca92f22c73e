"""Fault injection: every fault changes its span only, deterministically for a seed, the way
its name says; labelled windows mark exactly the windows that overlap a fault."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import ModelsError
from models.faults import (
    DRIFT_STD,
    FAULTS,
    GLITCH_EVERY,
    LENGTHS,
    SPIKE_STD,
    faulty_windows,
    inject,
)

START, LENGTH = 40, 20
SPAN = slice(START, START + LENGTH)


def _recording(n: int = 120, seed: int = 0) -> np.ndarray:
    """Six smooth channels (acc x/y/z, gyro x/y/z) that never repeat a value."""
    t = np.arange(n)[:, None]
    rng = np.random.default_rng(seed)
    waves = np.sin(0.13 * t * np.arange(1, 7) + rng.uniform(0, 6, 6)) + 0.01 * t
    return (waves * (0.5, 0.4, 0.3, 1.0, 2.0, 3.0) + (0.0, 0.0, 1.0, 0, 0, 0)).astype(np.float32)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(samples, channels) that differ."""
    return ~np.isclose(before, after)


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_changes_its_span_only_and_is_deterministic(fault):
    x = _recording()
    out = inject(x, fault, START, LENGTH, np.random.default_rng(3))
    changed = _changed(x, out)
    assert not changed[:START].any() and not changed[START + LENGTH :].any()
    assert changed[SPAN].any(axis=1).all()  # every sample of the span is hit
    assert np.array_equal(out, inject(x, fault, START, LENGTH, np.random.default_rng(3)))
    assert np.array_equal(x, _recording())  # the input is left as it was


def test_stuck_flip_swap_dropout_hit_what_they_say():
    x = _recording()
    stuck = inject(x, "stuck", START, LENGTH, np.random.default_rng(0))
    (c,) = np.flatnonzero(_changed(x, stuck).any(axis=0))
    assert np.all(stuck[SPAN, c] == x[START - 1, c])  # held at the last value before

    flip = inject(x, "flip", START, LENGTH, np.random.default_rng(1))
    (c,) = np.flatnonzero(_changed(x, flip).any(axis=0))
    np.testing.assert_array_equal(flip[SPAN, c], -x[SPAN, c])

    swap = inject(x, "swap", START, LENGTH, np.random.default_rng(2))
    a, b = np.flatnonzero(_changed(x, swap).any(axis=0))
    assert a // 3 == b // 3  # two axes of one sensor
    np.testing.assert_array_equal(swap[SPAN][:, [a, b]], x[SPAN][:, [b, a]])

    dropout = inject(x, "dropout", START, LENGTH, np.random.default_rng(3))
    assert np.all(dropout[SPAN] == 0.0)


def test_magnitudes_are_in_channel_std():
    x = _recording()
    scale = np.full(6, 2.0)
    spike = inject(x, "spike", START, LENGTH, np.random.default_rng(0), scale)
    jumps = (spike - x)[SPAN]
    (c,) = np.flatnonzero(np.abs(jumps).max(axis=0) > 0)
    np.testing.assert_allclose(np.abs(jumps[:, c]), SPIKE_STD * 2.0, rtol=1e-5)
    drift = inject(x, "drift", START, LENGTH, np.random.default_rng(0), scale)
    bias = (drift - x)[SPAN].sum(axis=1)
    np.testing.assert_allclose(bias, DRIFT_STD * 2.0 * np.arange(1, LENGTH + 1) / LENGTH, rtol=1e-5)


def test_glitch_shifts_samples_in_time():
    x = _recording()
    index = np.arange(START, START + LENGTH)
    slip = -(-np.arange(1, LENGTH + 1) // GLITCH_EVERY)  # 1 sample, then 2 after GLITCH_EVERY...
    seen = set()
    for seed in range(8):
        out = inject(x, "glitch", START, LENGTH, np.random.default_rng(seed))
        for sign in (-1, 1):  # repeated samples lag, skipped ones lead
            if np.array_equal(out[SPAN], x[index + sign * slip]):
                seen.add(sign)
    assert seen == {-1, 1}


def test_bad_faults_are_refused():
    x = _recording()
    with pytest.raises(ModelsError, match="fault must be one of"):
        inject(x, "melt", 0, 5, np.random.default_rng(0))
    with pytest.raises(ModelsError, match="does not fit"):
        inject(x, "stuck", 110, 20, np.random.default_rng(0))
    with pytest.raises(ModelsError, match="two channels"):
        inject(x[:, :1], "swap", 0, 5, np.random.default_rng(0))


@pytest.mark.parametrize("fault", FAULTS)
def test_labelled_windows_mark_exactly_the_windows_overlapping_a_fault(fault):
    recordings = [_recording(700, seed=1), _recording(500, seed=2)]
    window, stride = 16, 4
    X, y = faulty_windows(recordings, fault, window=window, stride=stride, seed=5)
    X2, y2 = faulty_windows(recordings, fault, window=window, stride=stride, seed=5)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    clean = np.concatenate(
        [np.lib.stride_tricks.sliding_window_view(r, window, axis=0)[::stride] for r in recordings]
    ).transpose(0, 2, 1)
    assert X.shape == clean.shape and y.dtype == np.int8
    # a window is labelled faulty exactly when it differs from the clean one
    differs = _changed(clean, X).any(axis=(1, 2))
    np.testing.assert_array_equal(y.astype(bool), differs)
    assert 0 < y.mean() < 1  # faulty windows and clean ones
    # each fault's span sits at least a window after the last: clean windows between them
    period = 4 * window + LENGTHS[fault]
    assert y.sum() <= sum(len(r) // period for r in recordings) * (
        (window + LENGTHS[fault]) // stride + 1
    )
    X3, _ = faulty_windows(recordings, fault, window=window, stride=stride, seed=6)
    assert not np.array_equal(X, X3)  # another seed, other places


def test_labelled_windows_refuse_overlapping_faults():
    with pytest.raises(ModelsError, match="period"):
        faulty_windows([_recording()], "stuck", window=16, stride=4, period=20)
