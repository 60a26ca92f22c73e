"""Conformance suite of the NumPy stream runtime: every cell type, on raw axes and in the gravity
frame, agrees with Keras to 1e-5."""

from __future__ import annotations

import zlib

import keras
import numpy as np
import pytest

from models.exceptions import ModelsError
from models.runtime import StreamRuntime, StreamWeights
from models.spec import CELLS, ModelMeta, ModelSpec
from models.zoo import build_model

TOL = {"rtol": 1e-5, "atol": 1e-5}
STEPS = 20
SLOTS = np.array([5, 2, 0, 7, 3])  # not sorted
COUNTS = np.array([20, 0, 7, 13, 1])  # uneven, one device without samples
CASES = [ModelSpec(setup="stream", cell=c, layers=n, hidden=8) for c in CELLS for n in (1, 2, 3)]
NEXT_CASES = [ModelSpec(setup="stream", cell=c, layers=2, hidden=8, next_step=True) for c in CELLS]
FRAME_CASES = [
    ModelSpec(setup="stream", cell=c, layers=2, hidden=8, next_step=True, frame="gravity")
    for c in CELLS
]
ENSEMBLE_CASES = [
    ModelSpec(setup="stream", cell="lstm", layers=2, hidden=8, members=3),
    ModelSpec(setup="stream", cell="gru", layers=1, hidden=8, next_step=True, members=2),
    ModelSpec(setup="stream", cell="rnn", layers=2, hidden=8, next_step=True, frame="gravity",
              members=3),
]  # fmt: skip
CASES += FRAME_CASES + ENSEMBLE_CASES
NEXT_CASES += FRAME_CASES + ENSEMBLE_CASES[1:]
_BUILT: dict[ModelSpec, tuple] = {}


def _reference(spec: ModelSpec, make_meta):
    """(model, meta, raw sequences (5, STEPS, channels), Keras outputs) with random non-zero
    weights. Gravity-frame models read a phone: gravity along a random direction per device,
    moving.

    Built once per spec for the whole module: Keras model building dominates the suite's time.
    """
    if spec not in _BUILT:
        meta = make_meta(spec)
        model = build_model(spec, meta)
        rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
        model.set_weights([rng.normal(0.0, 0.3, w.shape) for w in model.get_weights()])
        if meta.frame is None:
            raw = rng.normal(size=(len(SLOTS), STEPS, 3)) * meta.std + meta.mean
        else:
            down = rng.normal(size=(len(SLOTS), 1, 3))
            raw = rng.normal(0.0, 0.4, size=(len(SLOTS), STEPS, 6))
            raw[..., :3] += down / np.linalg.norm(down, axis=-1, keepdims=True)
        raw = raw.astype(np.float32)
        out = model.predict(raw, verbose=0)
        _BUILT[spec] = (model, meta, raw, out if isinstance(out, dict) else {"activity": out})
    return _BUILT[spec]


def _runtime(spec, make_meta, **kwargs) -> StreamRuntime:
    model, meta, _, _ = _reference(spec, make_meta)
    return StreamRuntime.from_keras(model, meta, **{"capacity": 8, "block": 3, **kwargs})


def _flat(arrays: np.ndarray, counts, start=None) -> np.ndarray:
    """Device ``i``'s ``counts[i]`` rows from ``start[i]`` (default 0), device by device."""
    start = np.zeros_like(counts) if start is None else start
    return np.concatenate([a[s : s + n] for a, s, n in zip(arrays, start, counts, strict=True)])


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name)
def test_advance_with_uneven_counts_matches_keras(spec, make_meta):
    _, _, raw, expected = _reference(spec, make_meta)
    runtime = _runtime(spec, make_meta)
    out = runtime.advance(SLOTS, COUNTS, _flat(raw, COUNTS))
    np.testing.assert_allclose(out.probs, _flat(expected["activity"], COUNTS), **TOL)
    assert (out.next is None) == (out.anomaly is None) == (not spec.next_step)


CHUNKS = np.array([[3, 0, 1, 9, 20], [0, 11, 19, 1, 0], [17, 9, 0, 10, 0]])  # STEPS per device


def _in_chunks(runtime: StreamRuntime, raw: np.ndarray, chunks=CHUNKS) -> list:
    """Each call's output, feeding every device its next ``chunks[k]`` samples at call ``k``."""
    done, outputs = np.zeros(len(SLOTS), int), []
    for counts in chunks:
        outputs.append(runtime.advance(SLOTS, counts, _flat(raw, counts, done)))
        done += counts
    return outputs


def _by_device(arrays: list[np.ndarray], chunks=CHUNKS) -> np.ndarray:
    """(devices, STEPS, ...): each device's rows of every call, joined in time order."""
    parts = [np.split(a, np.cumsum(counts)[:-1]) for a, counts in zip(arrays, chunks, strict=True)]
    return np.stack([np.concatenate(p) for p in zip(*parts, strict=True)])


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name)
def test_advance_in_chunks_carries_the_state(spec, make_meta):
    _, _, raw, expected = _reference(spec, make_meta)
    outputs = _in_chunks(_runtime(spec, make_meta), raw)
    np.testing.assert_allclose(_by_device([o.probs for o in outputs]), expected["activity"], **TOL)


@pytest.mark.parametrize("spec", CASES, ids=lambda s: s.name)
def test_step_equals_advance_with_counts_of_one(spec, make_meta):
    _, _, raw, expected = _reference(spec, make_meta)
    stepped, advanced = _runtime(spec, make_meta), _runtime(spec, make_meta)
    ones = np.ones(len(SLOTS), int)
    for t in range(5):
        probs = stepped.step(SLOTS, raw[:, t])
        np.testing.assert_allclose(
            probs, advanced.advance(SLOTS, ones, raw[:, t]).probs, 1e-6, 1e-7
        )
        np.testing.assert_allclose(probs, expected["activity"][:, t], **TOL)


@pytest.mark.parametrize("spec", NEXT_CASES, ids=lambda s: s.name)
def test_next_step_head_and_anomaly_match_keras(spec, make_meta):
    _, meta, raw, expected = _reference(spec, make_meta)
    outputs = _in_chunks(_runtime(spec, make_meta), raw)
    np.testing.assert_allclose(_by_device([o.probs for o in outputs]), expected["activity"], **TOL)
    np.testing.assert_allclose(_by_device([o.next for o in outputs]), expected["next"], **TOL)
    # the anomaly of sample t compares it with the prediction made at t - 1, across calls
    anomaly = _by_device([o.anomaly for o in outputs])
    assert np.isnan(anomaly[:, 0]).all()
    if spec.members > 1:  # the mean of the members' anomalies, each member run on its own
        members = [StreamRuntime(m, capacity=8, block=3) for m in _runtime(spec, make_meta).members]
        alone = [_by_device([o.anomaly for o in _in_chunks(m, raw)]) for m in members]
        np.testing.assert_allclose(anomaly, np.mean(alone, axis=0), **TOL)
        return
    inputs = raw if meta.frame is None else meta.frame.features_of(raw)
    normalised = (inputs - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
    want = np.mean((expected["next"][:, :-1] - normalised[:, 1:]) ** 2, axis=-1)
    np.testing.assert_allclose(anomaly[:, 1:], want, **TOL)


@pytest.mark.parametrize("spec", ENSEMBLE_CASES, ids=lambda s: s.name)
def test_ensemble_states_are_its_members_states(spec, make_meta):
    """A device's state holds every member's, member by member; restored into another runtime,
    the device goes on exactly as in the first."""
    _, _, raw, expected = _reference(spec, make_meta)
    runtime, other = _runtime(spec, make_meta), _runtime(spec, make_meta)
    ones = np.ones(len(SLOTS), int)
    runtime.advance(SLOTS, ones * 6, _flat(raw, ones * 6))
    states = runtime.get_states(SLOTS)
    members = [StreamRuntime(m, capacity=8, block=3) for m in runtime.members]
    for m in members:
        m.advance(SLOTS, ones * 6, _flat(raw, ones * 6))
    layers = spec.layers
    for k, m in enumerate(members):
        mine = m.get_states(SLOTS)
        np.testing.assert_array_equal(states["h"][:, k * layers : (k + 1) * layers], mine["h"])
    other.set_states(SLOTS, states)
    rest = ones * (STEPS - 6)
    out = other.advance(SLOTS, rest, _flat(raw, rest, ones * 6))
    np.testing.assert_allclose(out.probs, _flat(expected["activity"], rest, ones * 6), **TOL)


def test_ensemble_members_must_stack(make_meta):
    one, two = (_runtime(ENSEMBLE_CASES[i], make_meta).members[0] for i in (0, 1))
    with pytest.raises(ModelsError, match="must share"):
        StreamRuntime([one, two])
    with pytest.raises(ModelsError, match="at least one"):
        StreamRuntime([])


def test_snapshot_restore_and_reset(make_meta):
    spec = NEXT_CASES[1]  # lstm: h, c and the next-step prediction
    _, _, raw, _ = _reference(spec, make_meta)
    runtime = _runtime(spec, make_meta)
    ones = np.ones(len(SLOTS), int)
    runtime.advance(SLOTS, ones * 5, _flat(raw, ones * 5))
    snapshot = runtime.get_state(7)
    assert {k: v.shape for k, v in snapshot.items()} == {"h": (2, 8), "c": (2, 8), "next": (3,)}
    after = runtime.advance(SLOTS, ones * 3, _flat(raw, ones * 3, ones * 5))
    runtime.set_state(7, snapshot)
    np.testing.assert_array_equal(runtime.get_state(7)["h"], snapshot["h"])
    again = runtime.advance([7], [3], raw[3, 5:8])
    # one device instead of five in the GEMM: the same up to float32 rounding
    np.testing.assert_allclose(again.probs, after.probs[9:12], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(again.anomaly, after.anomaly[9:12], rtol=1e-6, atol=1e-7)

    runtime.reset([7, 0])
    state = runtime.get_state(7)
    assert not state["h"].any() and not state["c"].any() and np.isnan(state["next"]).all()
    fresh = _runtime(spec, make_meta).advance([7], [4], raw[3, :4])
    np.testing.assert_array_equal(runtime.advance([7], [4], raw[3, :4]).probs, fresh.probs)
    assert np.isnan(fresh.anomaly[0])
    with pytest.raises(ModelsError, match="states must be"):
        runtime.set_state(7, {"h": snapshot["h"]})
    with pytest.raises(ModelsError, match=r"in \[-1, 1\]"):
        runtime.set_state(7, {**snapshot, "h": snapshot["h"] + 2.0})


def test_large_logits_are_shifted_before_exp(make_meta):
    # a head this large takes logits past exp's float32 range: the runtime must shift each row
    # by its maximum (as Keras does) instead of taking exp of the raw logits
    spec = ModelSpec(setup="stream", cell="lstm", hidden=8)
    meta = make_meta(spec)
    model = build_model(spec, meta)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0.0, 0.3, w.shape) for w in model.get_weights()])
    head = model.get_layer("activity")
    head.set_weights([w * 1000.0 for w in head.get_weights()])
    raw = (rng.normal(size=(2, STEPS, 3)) * meta.std + meta.mean).astype(np.float32)
    expected = model.predict(raw, verbose=0)
    probs = (
        StreamRuntime.from_keras(model, meta, capacity=2)
        .advance([0, 1], [STEPS] * 2, raw.reshape(-1, 3))
        .probs
    )
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, expected.reshape(-1, expected.shape[-1]), **TOL)


def test_capacity_grows_and_keeps_the_states(make_meta):
    spec = CASES[4]  # lstm, 2 layers
    _, _, raw, _ = _reference(spec, make_meta)
    runtime = _runtime(spec, make_meta, capacity=2)
    runtime.advance([0, 1], [3, 3], np.concatenate([raw[0, :3], raw[1, :3]]))
    before = runtime.get_states([0, 1])
    with pytest.raises(ModelsError, match="ensure_capacity"):
        runtime.step([2], raw[2, :1])
    runtime.ensure_capacity(3)
    assert runtime.capacity == 4  # doubled
    runtime.ensure_capacity(9)
    assert runtime.capacity == 9
    after = runtime.get_states([0, 1])
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    assert not runtime.get_states(np.arange(2, 9))["h"].any()


def test_bad_calls_are_refused(make_meta):
    runtime = _runtime(CASES[0], make_meta)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ModelsError, match="twice"):
        runtime.step([1, 1], x)
    with pytest.raises(ModelsError, match="samples must be"):
        runtime.step([1, 2], x[:, :2])
    with pytest.raises(ModelsError, match="counts"):
        runtime.advance([1, 2], [1, -1], x[:0])
    with pytest.raises(ModelsError, match="samples must be"):
        runtime.advance([1, 2], [1, 2], x)
    empty = runtime.advance([], [], np.zeros((0, 3)))
    assert empty.probs.shape == (0, 3)


@pytest.mark.parametrize(
    ("spec", "meta_spec", "match"),
    [
        (ModelSpec(cell="gru", hidden=4), None, "stream models only"),
        (ModelSpec(architecture="birnn", hidden=4), ModelSpec(setup="stream"), "Bidirectional"),
        (ModelSpec(cell="lstm", hidden=4), ModelSpec(setup="stream"), "must return sequences"),
        (
            NEXT_CASES[0],
            ModelSpec(setup="stream", cell="rnn", layers=2, hidden=8),
            "next-step head",
        ),
    ],
    ids=["window", "bidirectional", "last-output-only", "meta-mismatch"],
)
def test_unsupported_models_are_refused(spec, meta_spec, match, make_meta):
    model = build_model(spec, make_meta(spec))
    with pytest.raises(ModelsError, match=match):
        StreamRuntime.from_keras(model, make_meta(meta_spec or spec))


def test_gru_with_reset_before_is_refused(make_meta):
    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    meta = make_meta(spec)
    inputs = keras.Input((None, 3))
    x = keras.layers.Normalization(mean=meta.mean, variance=np.square(meta.std))(inputs)
    x = keras.layers.GRU(4, reset_after=False, return_sequences=True)(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="activity")(x))
    with pytest.raises(ModelsError, match="reset_after"):
        StreamRuntime.from_keras(model, meta)


def test_normalisation_floors_the_std_at_keras_epsilon(make_meta):
    spec = ModelSpec(setup="stream", cell="rnn", hidden=4)
    meta = make_meta(spec)
    # channel 1: std below epsilon (1e-7), mean 0 so that tiny deviations stay representable
    meta = ModelMeta(**{**meta.__dict__, "mean": (0.5, 0.0, 9.81), "std": (2.0, 1e-9, 1.5)})
    model = build_model(spec, meta)
    raw = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    raw *= np.array([2.0, 1e-7, 1.5], np.float32)  # channel 1 normalises to ~1, not ~100
    raw += np.array(meta.mean, np.float32)
    assert StreamWeights.from_keras(model, meta).scale[1] == np.float32(keras.config.epsilon())
    out = StreamRuntime.from_keras(model, meta).advance([0, 1], [6, 6], raw.reshape(-1, 3))
    expected = model.predict(raw, verbose=0).reshape(-1, 3)
    np.testing.assert_allclose(out.probs, expected, **TOL)


def test_weights_from_plain_arrays_are_checked():
    rng = np.random.default_rng(0)
    good = {
        "cell": "gru",
        "mean": np.zeros(3),
        "scale": np.ones(3),
        "kernels": (rng.normal(size=(3, 12)),),
        "recurrent_kernels": (rng.normal(size=(4, 12)),),
        "biases": (rng.normal(size=(2, 12)),),
        "activity_kernel": rng.normal(size=(4, 2)),
        "activity_bias": np.zeros(2),
    }
    runtime = StreamRuntime(StreamWeights(**good), capacity=4)
    assert runtime.step([0, 3], np.ones((2, 3))).shape == (2, 2)
    with pytest.raises(ModelsError, match=r"biases\[0\]"):
        StreamWeights(**{**good, "biases": (np.zeros(12),)})
