"""Fixed-lag smoothing: the online smoother, fed in any chunks and flushed, equals the offline
centred mean; its state moves between smoothers; bad settings are refused. The fixed-lag HMM
smoother is each sample's posterior given the samples up to the lag after it, and is kept for a
delay only where it beats the centred mean on validation recordings."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from models.exceptions import ModelsError
from models.hmm import FLOOR, Grammar, estimate, fit_grammar
from models.smoothing import FixedLag, as_served, centred, fit_lag, hmm_lag


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


def _posterior(p, A, prior, temperature, lag):
    """The fixed-lag posterior sample by sample, as the textbook writes it."""
    like = (np.maximum(p, FLOOR) / prior) ** temperature
    alpha, belief = np.empty_like(p), prior
    for t in range(len(p)):
        belief = (belief @ A) * like[t]
        alpha[t] = belief = belief / belief.sum()
    out = np.empty_like(p)
    for t in range(len(p)):
        beta = np.ones(len(prior))
        for k in range(min(t + lag, len(p) - 1), t, -1):
            beta = A @ (like[k] * beta)
        out[t] = alpha[t] * beta / (alpha[t] * beta).sum()
    return out


@pytest.mark.parametrize("lag", [1, 5, 200])
def test_hmm_lag_is_each_samples_posterior_given_the_lag_after_it(lag):
    rng = np.random.default_rng(lag)
    labels = np.repeat(rng.integers(0, 3, 12), 6)
    A, prior = estimate([labels], 3)
    grammar = Grammar(tuple(map(tuple, A)), tuple(prior), 1.0, True)
    probs = [rng.dirichlet(np.ones(3), n).astype(np.float32) for n in (72, 3, 1)]
    got = hmm_lag(probs, grammar, 0.3, lag)
    for p, mine in zip(probs, got, strict=True):
        np.testing.assert_allclose(mine, _posterior(p.astype(np.float64), A, prior, 0.3, lag),
                                   atol=1e-5)  # fmt: skip
    assert hmm_lag([], grammar, 0.3, lag) == []


def test_fit_lag_keeps_the_smoother_only_for_delays_where_it_beats_the_centred_mean():
    rng = np.random.default_rng(3)
    seq = []
    for i in range(40):  # 0 and 2 in turn, each time through a short 1 (a transition)
        seq += [2 * (i % 2)] * int(rng.integers(40, 80)) + [1] * int(rng.integers(8, 15))
    labels = np.array(seq)
    classes = ("a", "b", "c")
    grammar = fit_grammar([labels], [np.eye(3)[labels]], [labels], classes)
    # a sharp model: the centred mean blurs each change, the smoother keeps it
    sharp = fit_lag(grammar, [np.eye(3)[labels]], [labels], classes, 50.0, (200.0, 400.0))
    assert [fit[0] for fit in sharp.lags] == [200.0, 400.0]
    assert all(t is not None and best > plain for _, t, plain, best in sharp.lags)
    # a noisy one: the centred mean averages the noise away better at a short delay
    noisy = np.eye(3)[labels] * 0.5 + 0.5 / 3
    wrong = rng.random(len(labels)) < 0.3
    noisy[wrong] = rng.dirichlet(np.ones(3) * 0.3, int(wrong.sum()))
    fitted = fit_lag(grammar, [noisy], [labels], classes, 50.0, (200.0,))
    ((_, temperature, plain, best),) = fitted.lags
    assert temperature is None and best <= plain
    assert fitted.lag_temperature(200.0) is None
    assert fit_lag(grammar, [], [], classes, 50.0).lags == ()  # no evidence
    # a worker takes the temperature of the delay measured nearest (by ratio) to its own
    assert sharp.lag_temperature(250.0) == sharp.lags[0][1]
    assert sharp.lag_temperature(2000.0) == sharp.lags[1][1]
    assert sharp.lag_temperature(0.0) is None and grammar.lag_temperature(400.0) is None
    served = as_served([np.eye(3)[labels]], sharp, 400.0, 50.0)[0]
    assert np.array_equal(served.argmax(-1), labels)
    back = Grammar.from_dict(json.loads(json.dumps(asdict(sharp))))
    assert back == sharp
