"""Fixed-lag smoothing: the online smoother, fed in any chunks and flushed, equals the offline
centred mean; its state moves between smoothers; bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import ModelsError
from models.smoothing import FixedLag, centred


def test_centred_is_the_mean_over_the_window_cut_at_both_ends():
    probs = np.random.default_rng(0).random((9, 3))
    out = centred(probs, 2)
    for t in range(9):
        np.testing.assert_allclose(out[t], probs[max(0, t - 2) : t + 3].mean(0))
    np.testing.assert_array_equal(centred(probs, 0), probs)
    assert centred(probs[:0], 3).shape == (0, 3)


@pytest.mark.parametrize("lag", [1, 4, 25])
def test_online_in_random_chunks_then_flushed_equals_offline(lag):
    rng = np.random.default_rng(lag)
    recordings = [rng.random((n, 5)) for n in (3 * lag + 7, lag, 2, 1)]  # some shorter than lag
    f = FixedLag(lag, width=5, smoothed=3, capacity=2)  # grows
    got: list[list[np.ndarray]] = [[] for _ in recordings]
    at = [0] * len(recordings)
    while any(a < len(r) for a, r in zip(at, recordings, strict=True)):
        slots, counts, rows = [], [], []
        for d, r in enumerate(recordings):
            n = min(int(rng.integers(0, 2 * lag + 3)), len(r) - at[d])
            if n:
                slots.append(d), counts.append(n), rows.append(r[at[d] : at[d] + n])
                at[d] += n
        f.ensure_capacity(len(recordings))
        if slots:
            out, emitted = f.push(slots, counts, np.concatenate(rows))
            assert emitted.sum() == len(out)
            for d, part in zip(slots, np.split(out, np.cumsum(emitted)[:-1]), strict=True):
                got[d].append(part)
    assert f.pending(range(4)).tolist() == [min(lag, len(r)) for r in recordings]
    out, emitted = f.flush(range(4))
    for d, part in enumerate(np.split(out, np.cumsum(emitted)[:-1])):
        got[d].append(part)
    for d, r in enumerate(recordings):
        mine = np.concatenate(got[d])
        np.testing.assert_allclose(mine[:, :3], centred(r[:, :3], lag), atol=1e-12)
        np.testing.assert_array_equal(mine[:, 3:], r[:, 3:])  # the emitted sample's own
    assert f.pending(range(4)).tolist() == [0, 0, 0, 0]


def test_a_slot_state_moves_to_another_smoother_mid_stream():
    rng = np.random.default_rng(3)
    r = rng.random((40, 2))
    whole = FixedLag(3, 2)
    expected = np.concatenate([whole.push([0], [40], r)[0], whole.flush([0])[0]])
    first, second = FixedLag(3, 2), FixedLag(3, 2, capacity=8)
    a = first.push([0], [17], r[:17])[0]
    second.set_state(5, first.get_state(0))
    b = second.push([5], [23], r[17:])[0]
    np.testing.assert_allclose(np.concatenate([a, b, second.flush([5])[0]]), expected)


def test_bad_settings_are_refused():
    with pytest.raises(ModelsError, match="lag"):
        FixedLag(0, 3)
    with pytest.raises(ModelsError, match="smoothed"):
        FixedLag(2, 3, smoothed=4)
    with pytest.raises(ModelsError, match="lag"):
        centred(np.zeros((3, 2)), -1)
