"""The model zoo: plain Keras models built from a :class:`ModelSpec` and :class:`ModelMeta`.

Every model normalises its input itself (a ``Normalization`` layer holding the training mean and
variance), after the gravity frame when it reads one (:mod:`models.layers`), so a saved model
takes raw sensor values. Recurrent layers share their weights over
time: the same cell is unrolled over every step of the window or stream. The seq2seq models
(encoder-decoder, unlabelled) are built by :mod:`models.seq2seq` on the same input.
"""

from __future__ import annotations

from collections.abc import Sequence

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
MEMBER = "m"
"""an ensemble member's layers are named ``m<k>_<name>``"""
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
    length = meta.window if spec.setup == "window" else steps
    inputs, x = raw_input(meta, length, batch_size, stateful)
    if spec.members == 1:
        outputs = _member(spec, meta, x, stateful, "")
    else:  # each member's layers named m<k>_..., each with its own normalisation
        heads = [_member(spec, meta, x, stateful, f"{MEMBER}{k}_") for k in range(spec.members)]
        heads = [h if isinstance(h, dict) else {ACTIVITY: h} for h in heads]
        outputs = {key: keras.layers.Average(name=key)([h[key] for h in heads]) for key in heads[0]}
        outputs = outputs if spec.next_step else outputs[ACTIVITY]
    return keras.Model(inputs, outputs, name=spec.name.replace("-", "_"))


def _member(spec: ModelSpec, meta: ModelMeta, x, stateful: bool, prefix: str):
    """One model of ``spec`` from ``x`` (the raw input or its frame features), its layers
    named with ``prefix``: its activity output, or with a next-step head both (a dict)."""
    x = _normalise(meta, prefix)(x)
    if spec.architecture == "mlp":
        x = _mlp(spec, x, prefix)
    elif spec.architecture == "cnn":
        x = _cnn(spec, x, prefix)
    else:
        x = _recurrent(spec, x, stateful, prefix)
    activity = keras.layers.Dense(len(meta.classes), activation="softmax",
                                  name=f"{prefix}{ACTIVITY}")(x)  # fmt: skip
    if not spec.next_step:
        return activity
    nxt = keras.layers.Dense(len(meta.inputs), name=f"{prefix}{NEXT}")(x)
    return {ACTIVITY: activity, NEXT: nxt}


def _normalise(meta: ModelMeta, prefix: str = "") -> keras.layers.Normalization:
    return keras.layers.Normalization(
        axis=-1,
        mean=np.asarray(meta.mean, np.float32),
        variance=np.square(np.asarray(meta.std, np.float32)),
        name=f"{prefix}normalise",
    )


def normalised_input(
    meta: ModelMeta, length: int | None, batch_size: int | None = None, stateful: bool = False
):
    """The model's raw input ``(batch, length, channels)`` and what its first layer reads: the
    input (or its gravity-frame features) normalised with ``meta``'s statistics."""
    inputs, x = raw_input(meta, length, batch_size, stateful)
    return inputs, _normalise(meta)(x)


def raw_input(
    meta: ModelMeta, length: int | None, batch_size: int | None = None, stateful: bool = False
):
    """The model's raw input ``(batch, length, channels)`` and what it reads before
    normalisation: the input itself, or its gravity-frame features."""
    inputs = keras.Input(shape=(length, len(meta.channels)), batch_size=batch_size, name=SAMPLES)
    x = inputs if meta.frame is None else gravity_frame(meta.frame, stateful=stateful)(inputs)
    return inputs, x


def _recurrent(spec: ModelSpec, x, stateful: bool, prefix: str = ""):
    if spec.conv_filters:
        for i in range(2):
            x = keras.layers.Conv1D(spec.conv_filters, 5, padding="same", activation="relu",
                                    name=f"{prefix}conv_{i}")(x)  # fmt: skip
    for i in range(spec.layers):
        last = i == spec.layers - 1
        sequences = spec.setup == "stream" or spec.architecture == "attention" or not last
        layer = CELL_LAYERS[spec.cell](
            spec.hidden, return_sequences=sequences, stateful=stateful,
            name=f"{prefix}{spec.cell}_{i}",
        )  # fmt: skip
        if spec.architecture == "birnn":
            layer = keras.layers.Bidirectional(layer, name=f"{prefix}bi{spec.cell}_{i}")
        x = layer(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return _attention_pooling(x, prefix) if spec.architecture == "attention" else x


def _attention_pooling(states, prefix: str = ""):
    """The hidden states ``(T, hidden)`` averaged with weights, a softmax over time of one
    learnt score per step: ``(hidden,)``."""
    scores = keras.layers.Dense(1, name=f"{prefix}attention_score")(states)
    weights = keras.layers.Softmax(axis=1, name=f"{prefix}{ATTENTION}")(scores)
    pooled = keras.layers.Dot(axes=1, name=f"{prefix}attention_pool")([weights, states])
    return keras.layers.Flatten(name=f"{prefix}attended")(pooled)  # (hidden,)


def _mlp(spec: ModelSpec, x, prefix: str = ""):
    x = keras.layers.Flatten()(x)
    for i in range(spec.layers):
        x = keras.layers.Dense(spec.hidden, activation="relu", name=f"{prefix}dense_{i}")(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return x


def _cnn(spec: ModelSpec, x, prefix: str = ""):
    for i in range(spec.layers):
        x = keras.layers.Conv1D(spec.hidden, 5, padding="same", activation="relu",
                                name=f"{prefix}conv_{i}")(x)  # fmt: skip
        if i < spec.layers - 1:
            x = keras.layers.MaxPooling1D(2)(x)
        if spec.dropout:
            x = keras.layers.Dropout(spec.dropout)(x)
    return keras.layers.GlobalAveragePooling1D()(x)


def assemble(members: Sequence[keras.Model], meta: ModelMeta) -> keras.Model:
    """One model of ``meta.spec``, an ensemble, holding ``members`` (models of the same spec
    with one member, normalised as ``meta`` says) as its members ``m0_...``, ``m1_...``."""
    if len(members) != meta.spec.members:
        raise SpecError(f"{meta.spec.name} has {meta.spec.members} members, not {len(members)}")
    ensemble = build_model(meta.spec, meta)
    for k, member in enumerate(members):
        for layer in member.layers:
            if type(layer) is keras.layers.Normalization:
                _same_normalisation(layer, ensemble.get_layer(f"{MEMBER}{k}_{layer.name}"))
            elif layer.weights and not isinstance(
                layer,
                keras.layers.RNN
                | keras.layers.Dense
                | keras.layers.Conv1D
                | keras.layers.Bidirectional,
            ):
                raise SpecError(f"layer {layer.name!r} is not an ensemble member's")
            elif layer.weights:
                ensemble.get_layer(f"{MEMBER}{k}_{layer.name}").set_weights(layer.get_weights())
    return ensemble


def member_model(ensemble: keras.Model, meta: ModelMeta, k: int) -> keras.Model:
    """Member ``k`` of ``ensemble`` on its own: a model of ``meta`` (one member)."""
    model = build_model(meta.spec, meta)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(ensemble.get_layer(f"{MEMBER}{k}_{layer.name}").get_weights())
    return model


def _same_normalisation(layer, other) -> None:
    for a, b in ((layer.mean, other.mean), (layer.variance, other.variance)):
        if not np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)):
            raise SpecError("ensemble members must be normalised alike (trained on the same users)")


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
