"""UCI HAR: 10,299 windows of 128 samples x 9 channels at 50 Hz, official train/test split.

Anguita et al., *A Public Domain Dataset for Human Activity Recognition Using Smartphones*,
ESANN 2013. CC BY 4.0 at UCI; the authors prohibit commercial use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streams.datasets.base import DeviceStream, StreamDataset
from streams.datasets.paths import default_path, read_npz
from streams.datasets.splits import HAPT_TEST_USERS
from streams.datasets.uci_hapt import REPLAY_T0_MS
from streams.exceptions import DatasetError

HAR_FILE = "uci_har.npz"
WINDOW = 128
"""Samples per window."""
HOP = 64
"""Samples between window starts: a window's successor shares its last ``WINDOW - HOP``."""

Split = Literal["train", "test"]


@dataclass(frozen=True, eq=False)
class HarWindows:
    """The windows of UCI HAR as stored: ``X_*`` float32 ``(N, 128, 9)``.

    ``y_*`` (activity 0..5) and ``subject_*`` (1..30) keep the file's dtype (int8); ``next_*``
    (int16) is the row whose first 64 samples equal this row's last 64, -1 if none. Rows are not
    always in time order: follow ``next_*`` (or use :meth:`streams`) for continuous signals.
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    subject_train: np.ndarray
    subject_test: np.ndarray
    next_train: np.ndarray
    next_test: np.ndarray
    channels: tuple[str, ...]
    activities: tuple[str, ...]
    rate_hz: float

    def segment_rows(self, split: Split) -> list[np.ndarray]:
        """Row indices of each continuous segment, in time order, segments by first row."""
        nxt = self._array("next", split).astype(np.int64)
        targets = nxt[nxt >= 0]
        if np.any(targets >= nxt.shape[0]) or np.unique(targets).size != targets.size:
            raise DatasetError(f"next_{split}: a successor is out of range or shared by two rows")
        is_successor = np.zeros(nxt.shape[0], dtype=bool)
        is_successor[targets] = True
        segments = []
        for row in np.flatnonzero(~is_successor):
            chain = [int(row)]
            while nxt[chain[-1]] >= 0:
                chain.append(int(nxt[chain[-1]]))
            segments.append(np.asarray(chain, dtype=np.int64))
        if sum(len(c) for c in segments) != nxt.shape[0]:
            raise DatasetError(f"next_{split}: successor links form a cycle")
        return segments

    def streams(self, split: Split) -> StreamDataset:
        """The continuous segments of ``split`` as streams (``har-<split>-uSS-KKK``).

        A segment's first window gives all 128 samples, each successor its last 64; every sample
        carries its window's label. Window ``j`` of a segment is ``values[64 j : 64 j + 128]``.
        All streams start at :data:`REPLAY_T0_MS`; ``user`` is the subject.
        """
        X = self._array("X", split)
        y = self._array("y", split)
        subject = self._array("subject", split)
        per_subject: dict[int, int] = {}
        streams = []
        for rows in self.segment_rows(split):
            user = int(subject[rows[0]])
            if np.any(subject[rows] != user):
                raise DatasetError(f"next_{split}: a segment from row {rows[0]} mixes subjects")
            k = per_subject.get(user, 0)
            per_subject[user] = k + 1
            values = np.concatenate(
                (X[rows[0], :HOP], X[rows, WINDOW - HOP :].reshape(-1, X.shape[2]))
            )
            labels = np.concatenate(([y[rows[0]]], y[rows])).astype(np.int16)
            streams.append(
                DeviceStream(
                    f"har-{split}-u{user:02d}-{k:03d}",
                    values,
                    np.repeat(labels, HOP),
                    self.rate_hz,
                    t0_ms=REPLAY_T0_MS,
                    user=user,
                )
            )
        return StreamDataset(
            f"uci_har_{split}", self.channels, self.activities, self.rate_hz, tuple(streams)
        )

    def _array(self, prefix: str, split: Split) -> np.ndarray:
        if split not in ("train", "test"):
            raise DatasetError(f"split must be 'train' or 'test', not {split!r}")
        return getattr(self, f"{prefix}_{split}")


def load_uci_har(path: str | os.PathLike[str] | None = None) -> HarWindows:
    """The windows of UCI HAR; ``path`` defaults to ``uci_har.npz`` in the data directory.

    Raises :class:`DatasetError` if the test subjects are not the official ones
    (:data:`HAPT_TEST_USERS`), so HAR and HAPT splits can be mixed without leaking users.
    """
    path = default_path(HAR_FILE) if path is None else path
    keys = [f"{p}_{s}" for p in ("X", "y", "subject", "next") for s in ("train", "test")]
    a = read_npz(path, [*keys, "channels", "activities", "sample_rate_hz"])
    for split in ("train", "test"):
        n = a[f"X_{split}"].shape[0]
        if a[f"X_{split}"].shape[1:] != (WINDOW, len(a["channels"])):
            raise DatasetError(f"{path}: X_{split} must be (N, {WINDOW}, channels)")
        if any(a[f"{p}_{split}"].shape != (n,) for p in ("y", "subject", "next")):
            raise DatasetError(f"{path}: y/subject/next_{split} must have one entry per window")
    if set(np.unique(a["subject_test"]).tolist()) != set(HAPT_TEST_USERS):
        raise DatasetError(f"{path}: test subjects differ from the official split")
    return HarWindows(
        **{k: a[k] for k in keys},
        channels=tuple(str(c) for c in a["channels"]),
        activities=tuple(str(c) for c in a["activities"]),
        rate_hz=float(a["sample_rate_hz"]),
    )
