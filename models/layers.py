"""harstream's own Keras layer: the gravity frame (:mod:`models.frame`) as a recurrent cell.

Registered with Keras under ``harstream>GravityFrameCell``, so that a saved model holding it
loads with ``safe_mode=True`` wherever :mod:`models` is imported. It has no weights; its state is
the frame's eight numbers per sequence, carried between calls like an LSTM's when stateful.
"""

from __future__ import annotations

from dataclasses import asdict

import keras
from keras import ops

from models.frame import _EPS, MOTION_LEVEL, STATE_SIZE, GravityFrame

FRAME_LAYER = "gravity_frame"


@keras.saving.register_keras_serializable(package="harstream")
class GravityFrameCell(keras.layers.Layer):
    """One step of :class:`models.frame.GravityFrame` (see there for what it computes)."""

    def __init__(
        self,
        channels: int,
        acc: tuple[int, int, int],
        gyro: tuple[int, ...],
        alpha_gravity: float,
        alpha_motion: float,
        alpha_reference: float,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.frame = GravityFrame(
            int(channels), tuple(acc), tuple(gyro),
            float(alpha_gravity), float(alpha_motion), float(alpha_reference),
        )  # fmt: skip
        self.state_size = [STATE_SIZE]
        self.output_size = self.frame.width

    def call(self, inputs, states):
        f = self.frame
        state = states[0] if isinstance(states, list | tuple) else states
        a = ops.take(inputs, list(f.acc), axis=-1)
        g, r, e, n = state[:, 0:3], state[:, 3:6], state[:, 6], state[:, 7]
        fresh = ops.sum(g * g, axis=-1) == 0
        size = ops.norm(a, axis=-1)
        g = ops.where(ops.expand_dims(fresh, -1), a, g + f.alpha_gravity * (a - g))
        r = ops.where(ops.expand_dims(fresh, -1), a, r)
        n = ops.where(fresh, size, n + f.alpha_gravity * (size - n))
        e = e + f.alpha_motion * (ops.square(size - n) - e)
        gg = ops.sum(g * g, axis=-1)
        m = ops.clip(e / ops.maximum(ops.square(MOTION_LEVEL * n), _EPS) - 1.0, 0.0, 3.0) / 3.0
        r = r + ops.expand_dims(f.alpha_reference * m, -1) * (g - r)
        u = g / ops.expand_dims(ops.sqrt(ops.maximum(gg, _EPS)), -1)
        vertical = ops.sum(a * u, axis=-1, keepdims=True)
        horizontal = ops.norm(a - vertical * u, axis=-1, keepdims=True)
        rr = ops.sum(r * r, axis=-1, keepdims=True)
        upright = ops.sum(u * r, axis=-1, keepdims=True) / ops.sqrt(ops.maximum(rr, _EPS))
        parts = [vertical, horizontal, upright]
        if f.gyro:
            w = ops.take(inputs, list(f.gyro), axis=-1)
            spin = ops.sum(w * u, axis=-1, keepdims=True)
            parts += [spin, ops.norm(w - spin * u, axis=-1, keepdims=True)]
        new = ops.concatenate([g, r, ops.expand_dims(e, -1), ops.expand_dims(n, -1)], axis=-1)
        return ops.concatenate(parts, axis=-1), [new]

    def get_config(self) -> dict:
        return super().get_config() | asdict(self.frame)


def gravity_frame(frame: GravityFrame, stateful: bool = False) -> keras.layers.RNN:
    """The frame as a layer over ``(batch, steps, channels)``: ``(batch, steps, width)``."""
    cell = GravityFrameCell(**asdict(frame))
    return keras.layers.RNN(cell, return_sequences=True, stateful=stateful, name=FRAME_LAYER)
