"""Anomaly scores of windows from detectors that are not seq2seq models (those:
:func:`models.seq2seq.anomaly_scores`): the next-sample head of a stream model, and a per-window
z-score that needs no training. Higher means more anomalous; one score per raw window."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from models.exceptions import ModelsError, SpecError
from models.seq2seq import normalised
from models.spec import ModelMeta
from models.zoo import NEXT


def next_step_scores(
    model: keras.Model, meta: ModelMeta, windows: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """The mean squared error, in normalised units, of a stream model's next-sample head over
    each raw window ``(N, T, channels)``: the model runs over the window from a zero state
    (Keras ``predict``, as :class:`~models.runtime.StreamRuntime` runs a fresh device), its
    ``next`` output at sample ``t`` is compared with the normalised sample ``t + 1``, and the
    ``T - 1`` errors are averaged with the channels."""
    if not meta.spec.next_step:
        raise SpecError(f"{meta.spec.name} has no next-sample head (next_step=True)")
    windows = np.asarray(windows, np.float32)
    if windows.ndim != 3 or windows.shape[1] < 2 or windows.shape[2] != len(meta.channels):
        raise ModelsError(f"expected windows (N, T >= 2, {len(meta.channels)}), not "
                          f"{windows.shape}")  # fmt: skip
    if not len(windows):
        return np.zeros(0, np.float32)
    predicted = model.predict(windows, batch_size=batch_size, verbose=0)[NEXT]
    target = normalised(meta, windows)
    return np.mean(np.square(predicted[:, :-1] - target[:, 1:]), axis=(1, 2))


def zscore_scores(windows: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The largest ``|x - mean| / std`` of each window ``(N, T, C)`` over its samples and
    channels, against the training data's per-channel ``mean`` and ``std``: no training, no
    memory.

    >>> zscore_scores(np.array([[[1.0, 0.0], [3.0, -4.0]]]), (1.0, 0.0), (1.0, 2.0)).tolist()
    [2.0]
    """
    z = (np.asarray(windows, np.float32) - np.asarray(mean, np.float32)) / np.asarray(
        std, np.float32
    )
    return np.max(np.abs(z), axis=(1, 2))
