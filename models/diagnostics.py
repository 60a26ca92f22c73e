"""Looking inside recurrent models: how far back in time the gradient still reaches, and where in
a window an attention model looks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models.plotting import png_axes
from models.zoo import ATTENTION


def input_gradient_norms(model: keras.Model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over windows of ``||dLoss/dx_t||`` for every step ``t`` of a window model.

    The loss is the classification loss at the window's end, so entry ``T - 1 - d`` tells how
    much a sample ``d`` steps back in time can still move it: a vanishing gradient decays
    towards zero with ``d``; gating (LSTM, GRU) keeps it alive.
    """
    x = tf.convert_to_tensor(X, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        probs = model(x, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(y, probs)
    grads = tape.gradient(loss, x).numpy()  # (N, T, C), each window's own loss
    return np.linalg.norm(grads, axis=-1).mean(axis=0)


def plot_gradient_norms(
    curves: Mapping[str, np.ndarray], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Plot gradient norm against distance back in time (log scale) as a PNG; curves whose
    name mentions "init" (untrained models) are dashed, in the colour of their cell."""
    with png_axes(path, (7.2, 4.2)) as ax:
        colours: dict[str, str] = {}
        for name, norms in curves.items():
            cell = name.split()[0]  # one colour per cell; untrained curves dashed
            colour = colours.setdefault(cell, f"C{len(colours)}")
            style = "--" if "init" in name else "-"
            ax.semilogy(np.arange(len(norms)), np.asarray(norms)[::-1], style, color=colour,
                        label=name)  # fmt: skip
        ax.set_xlabel("distance back in time from the end of the sequence (samples)")
        ax.set_ylabel("mean ||dLoss/dx_t||")
        ax.set_title(title or "How far back the gradient reaches", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return Path(path)


def attention_weights(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """The weights ``(N, T)`` an attention window model (``architecture="attention"``) gives
    each step of windows ``X`` ``(N, T, C)``; every row sums to 1."""
    probe = keras.Model(model.inputs, model.get_layer(ATTENTION).output)
    return probe.predict(X, batch_size=512, verbose=0)[..., 0]


def plot_attention(
    windows: np.ndarray,
    weights: np.ndarray,
    path: str | os.PathLike[str],
    channels: Sequence[str],
    titles: Sequence[str] = (),
) -> Path:
    """One row per window: its channels over time and, shaded on a second axis, the attention
    weight of every step; saved as a PNG."""
    n = len(windows)
    with png_axes(path, (7.2, 0.6 + 1.9 * n), rows=n) as axes:
        for i, ax in enumerate(np.atleast_1d(axes)):
            steps = np.arange(windows.shape[1])
            for c, name in enumerate(channels):
                ax.plot(steps, windows[i, :, c], linewidth=0.8, label=name)
            twin = ax.twinx()
            twin.fill_between(steps, weights[i], step="mid", color="C3", alpha=0.25)
            twin.set_ylim(0, max(float(weights[i].max()) * 1.1, 1e-6))
            twin.set_ylabel("attention", fontsize=7, color="C3")
            ax.set_title(titles[i] if i < len(titles) else f"window {i}", fontsize=8)
        ax.set_xlabel("step in the window")
        np.atleast_1d(axes)[0].legend(fontsize=6, ncol=min(len(channels), 6), loc="upper left")
    return Path(path)
