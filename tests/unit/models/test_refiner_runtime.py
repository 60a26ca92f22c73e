"""The refiner as a worker runs it equals the refiner offline: any batch split, many devices,
the stream's end flushed, a state carried across a checkpoint."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.exceptions import ModelsError
from models.hmm import Grammar, estimate
from models.refine import refined, refiner_channels, refiner_inputs
from models.refiner_runtime import LAG_KEY, RefinerRuntime
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model

CLASSES = ("rest", "move", "fall")


def _refiner(lag: int, cell: str = "gru") -> tuple[keras.Model, ModelMeta]:
    keras.utils.set_random_seed(0)
    spec = ModelSpec(setup="stream", cell=cell, hidden=6)
    meta = ModelMeta(spec=spec, channels=refiner_channels(CLASSES), classes=CLASSES,
                     rate_hz=50.0, mean=(-1.0,) * 6, std=(2.0,) * 6, window=16, stride=8,
                     provenance={LAG_KEY: lag})  # fmt: skip
    return build_model(spec, meta), meta


def _probs(rng, n: int) -> np.ndarray:
    p = rng.dirichlet((0.5, 0.5, 0.5), n)
    p[rng.integers(n)] = (1.0, 0.0, 0.0)  # a zero: floored
    return p.astype(np.float32)


def _grammar(rng) -> Grammar:
    A, prior = estimate([rng.integers(0, 3, 200) // 2 * 2], len(CLASSES))
    return Grammar(tuple(map(tuple, A)), tuple(prior), 0.7, True)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_served_in_batches_equals_the_refiner_offline(cell):
    rng = np.random.default_rng(0)
    lag = 5
    model, meta = _refiner(lag, cell)
    grammar = _grammar(rng)
    probs = [_probs(rng, n) for n in (40, 3, 17)]  # one shorter than the lag
    offline = refined(model, refiner_inputs(probs, grammar), lag)
    served = RefinerRuntime.from_keras(model, meta, grammar, capacity=2)
    slots = [7, 0, 3]  # grown on demand
    served.ensure_capacity(8)
    got: list[list[np.ndarray]] = [[] for _ in probs]
    at = [0, 0, 0]
    while any(a < len(p) for a, p in zip(at, probs, strict=True)):
        live = [i for i in range(3) if at[i] < len(probs[i])]
        counts = [min(int(rng.integers(1, 9)), len(probs[i]) - at[i]) for i in live]
        new = [probs[i][at[i] : at[i] + n] for i, n in zip(live, counts, strict=True)]
        out = served.advance([slots[i] for i in live], counts, np.concatenate(new))
        for i, part in zip(live, np.split(out, np.cumsum(counts)[:-1]), strict=True):
            got[i].append(part)
            at[i] += len(part)
    flushed = np.split(served.flush(slots), 3)
    for i in range(len(probs)):
        stream = np.concatenate([*got[i], flushed[i]])[lag:]  # output t labels sample t - lag
        np.testing.assert_allclose(stream, offline[i], atol=1e-5)


def test_beliefs_from_the_callers_filter_are_read_instead_of_filtering_twice():
    rng = np.random.default_rng(2)
    model, meta = _refiner(4)
    grammar = _grammar(rng)
    p = [_probs(rng, n) for n in (9, 14)]
    own = RefinerRuntime.from_keras(model, meta, grammar, capacity=2)
    told = RefinerRuntime.from_keras(model, meta, grammar, capacity=2)
    worker = grammar.decoder(2)  # the worker's decoder, of the same grammar

    def no_filter(*args):
        raise AssertionError("filtered twice")

    told.decoder.filter = no_filter
    for split in (slice(0, 5), slice(5, 9), slice(9, 14)):
        parts = [q[split] for q in p]
        counts = [len(q) for q in parts]
        probs = np.concatenate(parts)
        beliefs = worker.filter([0, 1], counts, probs)
        np.testing.assert_array_equal(told.advance([0, 1], counts, probs, beliefs),
                                      own.advance([0, 1], counts, probs))  # fmt: skip
        for slot in (0, 1):  # its filter's state is where its own filtering would have left it
            np.testing.assert_allclose(told.get_state(slot), own.get_state(slot), rtol=1e-6)


def test_a_state_carried_across_a_checkpoint_goes_on_as_if_never_stopped():
    rng = np.random.default_rng(1)
    model, meta = _refiner(3)
    grammar = _grammar(rng)
    p = _probs(rng, 30)
    one = RefinerRuntime.from_keras(model, meta, grammar, capacity=4)
    whole = one.advance([1], [30], p)
    two = RefinerRuntime.from_keras(model, meta, grammar, capacity=4)
    first = two.advance([1], [12], p[:12])
    values = two.get_state(1)
    three = RefinerRuntime.from_keras(model, meta, grammar, capacity=4)
    assert three.set_state(2, values)
    rest = three.advance([2], [18], p[12:])
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, atol=1e-6)
    np.testing.assert_allclose(three.flush([2]), one.flush([1]), atol=1e-6)
    assert not three.set_state(2, values[:-1])  # another refiner's: left fresh
    fresh = three.get_state(2)
    assert not fresh[:6].any() and not fresh[-6:].any()  # no hidden state, no last input


def test_a_refiner_that_does_not_fit_is_refused():
    rng = np.random.default_rng(2)
    model, meta = _refiner(3)
    two_classes = Grammar(((0.5, 0.5), (0.5, 0.5)), (0.5, 0.5), 1.0, True)
    with pytest.raises(ModelsError, match="over 2 classes"):
        RefinerRuntime.from_keras(model, meta, two_classes)
    with pytest.raises(ModelsError, match="no refiner_lag"):
        RefinerRuntime.from_keras(model, ModelMeta(**{**meta.__dict__, "provenance": {}}),
                                  _grammar(rng))  # fmt: skip
