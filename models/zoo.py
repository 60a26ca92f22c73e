"""The model zoo: plain Keras models built from a :class:`ModelSpec` and :class:`ModelMeta`.

Every model normalises its input itself (a ``Normalization`` layer holding the training mean and
variance), after the gravity frame when it reads one (:mod:`models.layers`), so a saved model
takes raw sensor values. Recurrent layers share their weights over
time: the same cell is unrolled over every step of the window or stream. The seq2seq models
(encoder-decoder, unlabelled) are built by :mod:`models.seq2seq` on the same input.
"""

from __future__ import annotations

import keras
import numpy as np

from models.exceptions import SpecError
from models.layers import gravity_frame
from models.spec import ModelMeta, ModelSpec

CELL_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
SAMPLES = "samples"
"""the raw input of every model"""
ACTIVITY = "activity"
NEXT = "next"
ATTENTION = "attention_weights"
"""the layer of an attention model whose output is its weights over time ``(batch, T, 1)``"""


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
    Seq2seq models: :func:`models.seq2seq.build_seq2seq`.
    """
    if spec.setup == "seq2seq":
        raise SpecError("a seq2seq model is built by models.seq2seq.build_seq2seq")
    classes = len(meta.classes)
    length = meta.window if spec.setup == "window" else steps
    inputs, x = normalised_input(meta, length, batch_size, stateful)
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


def normalised_input(
    meta: ModelMeta, length: int | None, batch_size: int | None = None, stateful: bool = False
):
    """The model's raw input ``(batch, length, channels)`` and what its first layer reads: the
    input (or its gravity-frame features) normalised with ``meta``'s statistics."""
    inputs = keras.Input(shape=(length, len(meta.channels)), batch_size=batch_size, name=SAMPLES)
    x = inputs
    if meta.frame is not None:
        x = gravity_frame(meta.frame, stateful=stateful)(x)
    x = keras.layers.Normalization(
        axis=-1,
        mean=np.asarray(meta.mean, np.float32),
        variance=np.square(np.asarray(meta.std, np.float32)),
        name="normalise",
    )(x)
    return inputs, x


def _recurrent(spec: ModelSpec, x, stateful: bool):
    if spec.conv_filters:
        x = keras.layers.Conv1D(spec.conv_filters, 5, padding="same", activation="relu")(x)
        x = keras.layers.Conv1D(spec.conv_filters, 5, padding="same", activation="relu")(x)
    for i in range(spec.layers):
        last = i == spec.layers - 1
        sequences = spec.setup == "stream" or spec.architecture == "attention" or not last
        layer = CELL_LAYERS[spec.cell](
            spec.hidden, return_sequences=sequences, stateful=stateful, name=f"{spec.cell}_{i}"
        )
        if spec.architecture == "birnn":
            layer = keras.layers.Bidirectional(layer, name=f"bi{spec.cell}_{i}")
        x = layer(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return _attention_pooling(x) if spec.architecture == "attention" else x


def _attention_pooling(states):
    """The hidden states ``(T, hidden)`` averaged with weights, a softmax over time of one
    learnt score per step: ``(hidden,)``."""
    scores = keras.layers.Dense(1, name="attention_score")(states)
    weights = keras.layers.Softmax(axis=1, name=ATTENTION)(scores)
    pooled = keras.layers.Dot(axes=1, name="attention_pool")([weights, states])  # (1, hidden)
    return keras.layers.Flatten(name="attended")(pooled)


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
