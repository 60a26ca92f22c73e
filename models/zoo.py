"""The model zoo: plain Keras models built from a :class:`ModelSpec` and :class:`ModelMeta`.

Every model normalises its input itself (a ``Normalization`` layer holding the training mean and
variance), after the gravity frame when it reads one (:mod:`models.layers`), so a saved model
takes raw sensor values. Recurrent layers share their weights over
time: the same cell is unrolled over every step of the window or stream.
"""

from __future__ import annotations

import keras
import numpy as np

from models.layers import gravity_frame
from models.spec import ModelMeta, ModelSpec

_CELLS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
ACTIVITY = "activity"
NEXT = "next"


def build_model(
    spec: ModelSpec,
    meta: ModelMeta,
    *,
    batch_size: int | None = None,
    steps: int | None = None,
    stateful: bool = False,
) -> keras.Model:
    """A Keras model for ``spec`` with ``meta``'s channels, classes and normalisation.

    Window models read ``(batch, window, channels)`` and output one softmax per window; stream
    models read ``(batch, steps, channels)`` (any length unless ``steps`` is given) and output a
    softmax per step, plus the next-step prediction when ``spec.next_step``. ``stateful`` keeps
    the hidden state between calls (needs ``batch_size``): truncated BPTT and stepping use it.
    """
    channels, classes = len(meta.channels), len(meta.classes)
    length = meta.window if spec.setup == "window" else steps
    inputs = keras.Input(shape=(length, channels), batch_size=batch_size, name="samples")
    x = inputs
    if meta.frame is not None:
        x = gravity_frame(meta.frame, stateful=stateful)(x)
    x = keras.layers.Normalization(
        axis=-1,
        mean=np.asarray(meta.mean, np.float32),
        variance=np.square(np.asarray(meta.std, np.float32)),
        name="normalise",
    )(x)
    if spec.architecture == "mlp":
        x = _mlp(spec, x)
    elif spec.architecture == "cnn":
        x = _cnn(spec, x)
    else:
        x = _recurrent(spec, x, stateful)
    activity = keras.layers.Dense(classes, activation="softmax", name=ACTIVITY)(x)
    outputs = activity
    if spec.next_step:
        outputs = {ACTIVITY: activity, NEXT: keras.layers.Dense(len(meta.inputs), name=NEXT)(x)}
    return keras.Model(inputs, outputs, name=spec.name.replace("-", "_"))


def _recurrent(spec: ModelSpec, x, stateful: bool):
    if spec.conv_filters:
        x = keras.layers.Conv1D(spec.conv_filters, 5, padding="same", activation="relu")(x)
        x = keras.layers.Conv1D(spec.conv_filters, 5, padding="same", activation="relu")(x)
    for i in range(spec.layers):
        sequences = spec.setup == "stream" or i < spec.layers - 1
        layer = _CELLS[spec.cell](
            spec.hidden, return_sequences=sequences, stateful=stateful, name=f"{spec.cell}_{i}"
        )
        if spec.architecture == "birnn":
            layer = keras.layers.Bidirectional(layer, name=f"bi{spec.cell}_{i}")
        x = layer(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return x


def _mlp(spec: ModelSpec, x):
    x = keras.layers.Flatten()(x)
    for _ in range(spec.layers):
        x = keras.layers.Dense(spec.hidden, activation="relu")(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return x


def _cnn(spec: ModelSpec, x):
    for i in range(spec.layers):
        x = keras.layers.Conv1D(spec.hidden, 5, padding="same", activation="relu")(x)
        if i < spec.layers - 1:
            x = keras.layers.MaxPooling1D(2)(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return keras.layers.GlobalAveragePooling1D()(x)


def stateful_copy(
    model: keras.Model, spec: ModelSpec, meta: ModelMeta, batch_size: int, steps: int | None = None
) -> keras.Model:
    """The same model (same weights) with its recurrent state kept between calls."""
    copy = build_model(spec, meta, batch_size=batch_size, steps=steps, stateful=True)
    copy.set_weights(model.get_weights())
    return copy


def reset_state(model: keras.Model) -> None:
    """Zero the hidden state of every stateful recurrent layer of ``model``."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
