"""The HMM forward filter: transitions learnt from label sequences, a vectorised filter equal to
the sample-by-sample recursion across uneven batches, and a grammar that vetoes a flicker."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from models.exceptions import ModelsError
from models.hmm import FLOOR, TEMPERATURES, ForwardFilter, Grammar, estimate, fit_grammar


def _reference(A, prior, temperature, probs):
    """The recursion, one sample at a time, for one device from the prior."""
    belief, out = prior.copy(), []
    for p in probs:
        b = (belief @ A) * (np.maximum(p, FLOOR) / prior) ** temperature
        belief = b / b.sum()
        out.append(belief)
    return np.array(out)


def test_transitions_count_annotated_pairs_only_and_smooth():
    A, prior = estimate([np.array([0, 0, -1, 1, 1, 2]), np.array([2, 2])], 3, smoothing=1.0)
    # pairs (0,0), (1,1), (1,2), (2,2); pairs touching -1 skipped; +1 everywhere
    np.testing.assert_allclose(A, [[2 / 4, 1 / 4, 1 / 4], [1 / 5, 2 / 5, 2 / 5],
                                   [1 / 4, 1 / 4, 2 / 4]])  # fmt: skip
    np.testing.assert_allclose(prior, np.array([3, 3, 4]) / 10)
    with pytest.raises(ModelsError, match="labels must be"):
        estimate([np.array([0, 3])], 3)
    with pytest.raises(ModelsError, match="never followed"):
        estimate([np.array([0, 0])], 2, smoothing=0.0)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_the_batched_filter_equals_the_recursion_over_uneven_chunks(temperature):
    rng = np.random.default_rng(0)
    k, devices = 4, 7
    A, prior = estimate([rng.integers(0, k, 500)], k, smoothing=2.0)
    streams = [rng.dirichlet(np.ones(k) * 0.5, size=int(n)) for n in rng.integers(1, 60, devices)]
    expected = [_reference(A, prior, temperature, p) for p in streams]
    f = ForwardFilter(A, prior, temperature, capacity=2)  # grows
    got = [[] for _ in streams]
    at = np.zeros(devices, np.int64)
    while any(at[i] < len(p) for i, p in enumerate(streams)):  # random chunks, random devices
        live = [i for i, p in enumerate(streams) if at[i] < len(p) and rng.random() < 0.7]
        if not live:
            continue
        counts = [int(min(rng.integers(1, 9), len(streams[i]) - at[i])) for i in live]
        f.ensure_capacity(max(live) + 1)
        chunk = [streams[i][at[i] : at[i] + c] for i, c in zip(live, counts, strict=True)]
        out = f.filter(live, counts, np.concatenate(chunk))
        for i, c, part in zip(live, counts, np.split(out, np.cumsum(counts)[:-1]), strict=True):
            got[i].append(part)
            at[i] += c
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.concatenate(g), e, atol=1e-6)


def test_a_grammar_that_forbids_a_jump_vetoes_a_one_sample_flicker():
    # sit (0) -> stand (1) only through stand-up (2); the model flickers to stand for a sample
    labels = [np.array([0] * 50 + [2] * 5 + [1] * 50)] * 4
    A, prior = estimate(labels, 3, smoothing=0.01)
    probs = np.tile([0.89, 0.1, 0.01], (40, 1))
    probs[20] = [0.25, 0.74, 0.01]
    f = ForwardFilter(A, prior)
    out = f.filter([0], [40], probs)
    assert probs.argmax(-1)[20] == 1 and (out.argmax(-1) == 0).all()
    f.reset([0])
    np.testing.assert_allclose(f.get_state(0), prior, rtol=1e-6)


def test_bad_matrices_are_refused():
    with pytest.raises(ModelsError, match="row-stochastic"):
        ForwardFilter(np.ones((2, 2)), np.array([0.5, 0.5]))
    with pytest.raises(ModelsError, match="prior"):
        ForwardFilter(np.eye(2), np.array([1.0, 0.0]))


def test_fit_grammar_enables_decoding_only_where_it_beats_the_model_on_validation():
    rng = np.random.default_rng(3)
    labels = np.repeat(rng.integers(0, 3, 40), 50)  # long runs of one class
    flicker = np.eye(3)[labels] * 0.6 + 0.4 / 3
    wrong = rng.random(len(labels)) < 0.2  # one sample in five leans to a random class
    flicker[wrong] = rng.dirichlet(np.ones(3) * 0.3, int(wrong.sum()))
    grammar = fit_grammar([labels], [flicker], [labels], ("a", "b", "c"))
    plain, decoded = grammar.validation
    assert grammar.enabled and decoded > plain + 0.05 and grammar.temperature in TEMPERATURES
    perfect = np.eye(3)[labels]
    assert not fit_grammar([labels], [perfect], [labels], ("a", "b", "c")).enabled
    assert not fit_grammar([labels], [], [], ("a", "b", "c")).enabled  # no evidence
    back = Grammar.from_dict(json.loads(json.dumps(asdict(grammar))))
    assert back == grammar


def test_a_balanced_model_is_decoded_against_a_uniform_prior():
    rng = np.random.default_rng(4)
    labels = np.repeat(rng.choice(3, 40, p=[0.8, 0.1, 0.1]), 50)  # a common class, two rare
    # balanced class weights: the probabilities already favour no class; dividing them by the
    # labels' shares again would lift the rare classes over a model that is right
    probs = np.eye(3)[labels] * 0.5 + 0.5 / 3
    shares = fit_grammar([labels], [probs], [labels], ("a", "b", "c"))
    balanced = fit_grammar([labels], [probs], [labels], ("a", "b", "c"), balanced=True)
    assert np.allclose(balanced.prior, 1 / 3) and not np.allclose(shares.prior, 1 / 3)
    assert balanced.transitions == shares.transitions
    assert balanced.validation[1] > 0.9  # decoded, the labels stay (late at each change)
    assert shares.validation[1] < 0.5  # the prior counted twice turns common samples rare
