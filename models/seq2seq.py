"""Seq2seq models: a recurrent encoder and decoder trained without labels, whose error on a
window is an anomaly score.

- ``task="reconstruct"``: an autoencoder. The encoder's final hidden state, one fixed-length
  vector, is repeated to every step of a decoder that regenerates the window; that vector is
  all the decoder sees. With ``architecture="mlp"``, a memory-less baseline: Dense layers from
  the flattened window to a vector of ``hidden`` values and back.
- ``task="forecast"``: the encoder's final states start a decoder that predicts the next
  ``horizon`` samples one at a time. It is trained with teacher forcing (each decoder step is
  fed the true previous sample); the saved model unrolls the same decoder layers ``horizon``
  times, each step fed the previous step's output. With ``attention``, every decoder step
  attends to the encoder's states by dot-product (Luong) attention, and the context vector is
  concatenated to the decoder's output before the output layer.

Like every zoo model, they normalise their raw input themselves; their outputs are in
normalised units, and the score of a window is its mean squared error in those units.
"""

from __future__ import annotations

import keras
import numpy as np

from models.exceptions import ModelsError, SpecError
from models.spec import ModelMeta, ModelSpec
from models.zoo import CELL_LAYERS, SAMPLES, normalised_input

THRESHOLD_QUANTILE = 0.99
"""the quantile of the training windows' scores above which a window is anomalous"""
PREVIOUS = "previous"
"""the teacher-forced decoder input of a forecaster's training model"""


def build_seq2seq(spec: ModelSpec, meta: ModelMeta) -> tuple[keras.Model, keras.Model]:
    """``(training model, inference model)`` for a seq2seq ``spec``, sharing every layer.

    The inference model reads raw windows ``(batch, window, channels)`` and outputs the window
    (reconstruct) or the next ``horizon`` samples (forecast), normalised: it is the one to save.
    An autoencoder's two models are one; a forecaster's training model also reads the
    normalised previous samples ``(batch, horizon, inputs)`` (input :data:`PREVIOUS`).
    """
    if spec.setup != "seq2seq":
        raise SpecError("build_seq2seq builds seq2seq models; see models.zoo.build_model")
    build = _autoencoder if spec.task == "reconstruct" else _forecaster
    if spec.architecture == "mlp":
        build = _mlp_autoencoder
    return build(spec, meta, name=spec.name.replace("-", "_"))


def _layers(spec: ModelSpec, role: str, **kwargs) -> list[keras.layers.Layer]:
    cell = CELL_LAYERS[spec.cell]
    return [cell(spec.hidden, name=f"{role}_{i}", **kwargs) for i in range(spec.layers)]


def _autoencoder(spec: ModelSpec, meta: ModelMeta, name: str) -> tuple[keras.Model, keras.Model]:
    inputs, x = normalised_input(meta, meta.window)
    for i in range(spec.layers):  # the last layer keeps only its final state: one vector
        more = i < spec.layers - 1
        x = CELL_LAYERS[spec.cell](spec.hidden, return_sequences=more, name=f"encoder_{i}")(x)
    x = keras.layers.RepeatVector(meta.window, name="repeat_code")(x)  # (window, hidden)
    for layer in _layers(spec, "decoder", return_sequences=True):
        x = layer(x)
    outputs = keras.layers.Dense(len(meta.inputs), name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name=name)
    return model, model


def _mlp_autoencoder(
    spec: ModelSpec, meta: ModelMeta, name: str
) -> tuple[keras.Model, keras.Model]:
    """Memory-less: ``layers`` Dense layers of ``hidden`` units from the flattened window down
    to the code (the last of them), ``layers - 1`` back up, then the window."""
    inputs, x = normalised_input(meta, meta.window)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(2 * spec.layers - 1):
        x = keras.layers.Dense(spec.hidden, activation="relu", name=f"dense_{i}")(x)
    x = keras.layers.Dense(meta.window * len(meta.inputs), name="flat_reconstruction")(x)
    outputs = keras.layers.Reshape((meta.window, len(meta.inputs)), name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name=name)
    return model, model


def _forecaster(spec: ModelSpec, meta: ModelMeta, name: str) -> tuple[keras.Model, keras.Model]:
    width = len(meta.inputs)
    encoder = _layers(spec, "encoder", return_sequences=True, return_state=True)
    decoder = _layers(spec, "decoder", return_sequences=True, return_state=True)
    attention = keras.layers.Attention(name="attention") if spec.attention else None
    context = keras.layers.Concatenate(name="with_context") if spec.attention else None
    output = keras.layers.Dense(width, name="forecast")

    def decode(y, states, memory):
        """Decoder steps from ``states`` over ``y``: outputs, and the states they end in."""
        ends = []
        for layer, state in zip(decoder, states, strict=True):
            y, *state = layer(y, initial_state=state)
            ends.append(state)
        if attention is not None:
            y = context([y, attention([y, memory])])
        return output(y), ends

    inputs, memory = normalised_input(meta, meta.window)
    last = keras.layers.Cropping1D((meta.window - 1, 0), name="last_sample")(memory)
    states = []
    for layer in encoder:
        memory, *state = layer(memory)
        states.append(state)

    previous = keras.Input(shape=(spec.horizon, width), name=PREVIOUS)
    teacher, _ = decode(previous, states, memory)
    training = keras.Model([inputs, previous], teacher, name=f"{name}_teacher")

    y, steps = last, []
    for _ in range(spec.horizon):  # each step fed the previous step's output
        y, states = decode(y, states, memory)
        steps.append(y)
    if len(steps) > 1:
        y = keras.layers.Concatenate(axis=1, name="forecast_steps")(steps)
    return training, keras.Model(inputs, y, name=name)


def span(meta: ModelMeta) -> int:
    """Samples of the windows a seq2seq model is trained and scored on (:attr:`ModelMeta.span`)."""
    return meta.span


def training_arrays(meta: ModelMeta, windows: np.ndarray) -> tuple[object, np.ndarray]:
    """``(inputs, targets)`` of the training model for raw windows of :func:`span` samples:
    the window (and, for a forecaster, the true previous samples, normalised), and the
    normalised window or next samples."""
    normal = normalised(meta, windows)
    if meta.spec.task == "reconstruct":
        return windows, normal
    w = meta.window
    return {SAMPLES: windows[:, :w], PREVIOUS: normal[:, w - 1 : -1]}, normal[:, w:]


def anomaly_scores(
    model: keras.Model, meta: ModelMeta, windows: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """One score per raw window ``(N, span, channels)`` (:func:`span`): the mean squared error,
    in normalised units, of the model's reconstruction or forecast."""
    if meta.spec.setup != "seq2seq":
        raise SpecError(f"anomaly scores are the error of seq2seq models, not {meta.spec.name}")
    windows = np.asarray(windows, np.float32)
    if windows.ndim != 3 or windows.shape[1:] != (span(meta), len(meta.channels)):
        raise ModelsError(
            f"expected windows (N, {span(meta)}, {len(meta.channels)}), not {windows.shape}"
        )
    if not len(windows):
        return np.zeros(0, np.float32)
    predicted = model.predict(windows[:, : meta.window], batch_size=batch_size, verbose=0)
    return window_errors(meta, predicted, windows)


def window_errors(meta: ModelMeta, predicted: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The score of each raw window ``(N, span, channels)`` given the model's output on it:
    the mean squared error of the reconstruction or forecast against the normalised window."""
    target = normalised(meta, windows)[:, -predicted.shape[1] :]
    return np.mean(np.square(np.asarray(predicted) - target), axis=(1, 2))


def scorer(model: keras.Model, meta: ModelMeta):
    """``windows -> scores`` for a worker: :func:`anomaly_scores` of a batch of raw windows
    ``(N, span, channels)`` in one Keras call (``predict_on_batch``, no per-call set-up)."""
    if meta.spec.setup != "seq2seq":
        raise SpecError(f"anomaly scores are the error of seq2seq models, not {meta.spec.name}")

    def score(windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, np.float32)
        predicted = model.predict_on_batch(windows[:, : meta.window])
        return window_errors(meta, predicted, windows)

    return score


def threshold_of(scores: np.ndarray, quantile: float = THRESHOLD_QUANTILE) -> float:
    """The score at ``quantile`` of ``scores`` (those of the training windows)."""
    if not len(scores):
        raise ModelsError("no scores to set an anomaly threshold from")
    return float(np.quantile(scores, quantile))


def normalised(meta: ModelMeta, windows: np.ndarray) -> np.ndarray:
    """What a model's normalisation layer makes of raw ``windows`` (any zoo model's
    ``meta``), computed in NumPy."""
    frame = meta.frame
    values = windows if frame is None else frame.features_of(windows)
    mean, std = np.asarray(meta.mean, np.float32), np.asarray(meta.std, np.float32)
    return ((values - mean) / std).astype(np.float32)
