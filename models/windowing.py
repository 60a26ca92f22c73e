"""Cutting continuous recordings into fixed windows, and the statistics fitted on them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.exceptions import ModelsError


def sliding_windows(
    values: np.ndarray, labels: np.ndarray, window: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one recording: ``(X, y, end)``.

    ``X`` is ``(N, window, C)`` (a view where possible), ``y`` the label of each window's last
    sample (-1 if it is not annotated: a window model predicts the activity *now*), ``end`` the
    index of that last sample.

    >>> X, y, end = sliding_windows(np.zeros((10, 2), np.float32), np.arange(10), 4, 3)
    >>> X.shape, y.tolist(), end.tolist()
    ((3, 4, 2), [3, 6, 9], [3, 6, 9])
    """
    n = values.shape[0]
    if window < 1 or stride < 1:
        raise ModelsError("window and stride must be >= 1")
    if n < window:
        return (
            np.zeros((0, window, values.shape[1]), values.dtype),
            np.zeros(0, labels.dtype),
            np.zeros(0, np.int64),
        )
    starts = np.arange(0, n - window + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (n-w+1, C, w)
    X = view[starts].transpose(0, 2, 1)
    end = starts + window - 1
    return X, labels[end], end


def windows_from_recordings(
    recordings: Sequence[tuple[np.ndarray, np.ndarray]],
    window: int,
    stride: int,
    groups: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of many recordings, concatenated: ``(X, y, group)`` (group = e.g. user)."""
    Xs, ys, gs = [], [], []
    for i, (values, labels) in enumerate(recordings):
        X, y, _ = sliding_windows(values, labels, window, stride)
        Xs.append(np.ascontiguousarray(X))
        ys.append(y)
        gs.append(np.full(len(y), groups[i] if groups is not None else i, np.int64))
    if not Xs:
        raise ModelsError("no recordings to cut into windows")
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs)


def fit_normalisation(values: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation over every sample (last axis = channels)."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel is left unscaled
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def balanced_class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """``n / (classes * count)`` per class over annotated labels (absent classes get 1)."""
    annotated = labels[labels >= 0]
    counts = np.bincount(annotated, minlength=classes).astype(np.float64)
    weights = np.ones(classes)
    present = counts > 0
    weights[present] = annotated.size / (present.sum() * counts[present])
    return weights.astype(np.float32)
