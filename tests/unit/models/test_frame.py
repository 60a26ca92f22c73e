"""The gravity frame: invariant to how the device is turned, causal, and the same in Keras."""

from __future__ import annotations

import numpy as np
import pytest

from models.augment import uniform_rotations
from models.exceptions import SpecError
from models.frame import STATE_SIZE, GravityFrame
from models.io import load_model, save_model
from models.runtime import StreamRuntime
from models.spec import ModelSpec
from models.zoo import build_model

RATE = 50.0
PHONE = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")


def _phone(seconds: float, rng: np.random.Generator, down=(0.0, 0.0, 1.0), motion=0.0):
    """A phone held still (or shaken by ``motion`` g, 0.2 rad/s of noise turning it) with
    gravity along ``down``: (T, 6), in g and rad/s."""
    n = int(seconds * RATE)
    out = rng.normal(0.0, 0.01 + motion, size=(n, 6))
    out[:, :3] += np.asarray(down, float) / np.linalg.norm(down)
    out[:, 3:] *= 0.2 / (0.01 + motion) if motion else 1.0
    return out.astype(np.float32)


def test_features_do_not_change_when_the_device_is_turned():
    rng = np.random.default_rng(0)
    frame = GravityFrame.for_channels(PHONE, RATE)
    recording = np.concatenate([_phone(4, rng, motion=0.3), _phone(4, rng, (0, 1, 1))])
    turns = uniform_rotations(5, rng).astype(np.float32)
    turned = np.stack([recording] * 5)
    for group in (slice(0, 3), slice(3, 6)):
        turned[..., group] = np.einsum("ntc,nrc->ntr", turned[..., group], turns)
    features = frame.features_of(turned)
    np.testing.assert_allclose(features, np.stack([frame.features_of(recording)] * 5), atol=2e-5)


def test_uprightness_tells_lying_from_standing_whatever_way_up_the_phone_is():
    rng = np.random.default_rng(1)
    frame = GravityFrame.for_channels(PHONE, RATE)
    for down in [(0, 0, 1), (0, 0, -1), (1, 1, 0)]:  # upright, upside down, on its edge
        side = np.cross(down, (0.3, 0.5, 0.7))  # at right angles to the walking vertical
        walk_then_lie = np.concatenate([_phone(20, rng, down, motion=0.3), _phone(10, rng, side)])
        upright = frame.features_of(walk_then_lie)[:, 2]
        assert upright[int(19 * RATE)] > 0.98  # walking: upright
        assert abs(upright[-1]) < 0.05  # lying: at right angles to how it walked


def test_the_first_sample_starts_the_filters_and_a_zero_state_is_a_reset():
    frame = GravityFrame.for_channels(PHONE[:3], RATE)
    assert frame.width == 3 and frame.names == ("vertical_acc", "horizontal_acc", "upright")
    x = np.array([[0.0, 2.0, 0.0]], np.float32)
    state, out = np.zeros((1, STATE_SIZE), np.float32), np.empty((1, 3), np.float32)
    frame.step(x, state, out)
    np.testing.assert_allclose(state[0], [0, 2, 0, 0, 2, 0, 0, 2])
    np.testing.assert_allclose(out[0], [2.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "channels",
    [("ax", "ay", "az"), ("body_acc_x", "body_acc_y", "body_acc_z"), (*PHONE, "light")],
    ids=["unnamed", "without-gravity", "extra-channel"],
)
def test_channels_the_frame_cannot_read_are_refused(channels):
    with pytest.raises(SpecError, match="gravity frame reads one accelerometer"):
        GravityFrame.for_channels(channels, RATE)


def test_a_gravity_model_saves_loads_safely_and_runs_the_same_in_numpy(make_meta, tmp_path):
    spec = ModelSpec(setup="stream", cell="gru", hidden=8, frame="gravity")
    meta = make_meta(spec)
    assert spec.name == "stream-gru-gravity-1x8" and meta.inputs == meta.frame.names
    path = save_model(build_model(spec, meta), meta, tmp_path / "g.keras")
    model, loaded = load_model(path)  # safe_mode=True
    assert loaded.frame == meta.frame
    rng = np.random.default_rng(2)
    raw = np.stack([_phone(2, rng, d, motion=0.2) for d in [(0, 0, 1), (1, 0, -1)]])
    expected = model.predict(raw, verbose=0)
    runtime = StreamRuntime.from_keras(model, loaded, capacity=2)
    out = runtime.advance([1, 0], [100, 100], raw.reshape(-1, 6))
    np.testing.assert_allclose(out.probs, expected.reshape(-1, 3), rtol=1e-5, atol=1e-5)
    state = runtime.get_state(0)
    assert state["frame"].shape == (STATE_SIZE,) and state["frame"].any()
    runtime.reset([0])
    assert not runtime.get_state(0)["frame"].any()
