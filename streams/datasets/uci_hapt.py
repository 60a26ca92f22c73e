"""UCI HAPT raw recordings: 61 continuous experiments at 50 Hz, labelled per sample.

Reyes-Ortiz et al., *Transition-Aware Human Activity Recognition Using Smartphones*,
Neurocomputing 171 (2016). CC BY 4.0 at UCI; the authors prohibit commercial use.
"""

from __future__ import annotations

import os

import numpy as np

from streams.datasets.base import DeviceStream, StreamDataset
from streams.datasets.paths import default_path, read_npz
from streams.exceptions import DatasetError

HAPT_FILE = "uci_hapt_raw.npz"

REPLAY_T0_MS = 1_700_000_000_000
"""Start time (ms since the epoch) given to recordings that carry no wall-clock time.

Every stream starts here, so a replay interleaved in event-time order plays them side by side
like a fleet of devices rather than one after another.
"""

_ARRAYS = ("exp", "user", "values", "label", "channels", "activities", "sample_rate_hz")


def load_uci_hapt(path: str | os.PathLike[str] | None = None) -> StreamDataset:
    """One :class:`DeviceStream` per experiment (device ``hapt-eEE-uUU``), starting at
    :data:`REPLAY_T0_MS`.

    Labels are the 12 activity codes of the file (6 activities, 6 postural transitions), with
    -1 where the sample is not annotated (27 %: mostly unannotated movement, not idling).
    ``path`` defaults to ``uci_hapt_raw.npz`` in the data directory.
    """
    path = default_path(HAPT_FILE) if path is None else path
    a = read_npz(path, _ARRAYS)
    exp, user, values = a["exp"], a["user"], a["values"]
    n = values.shape[0]
    if values.ndim != 2 or exp.shape != (n,) or user.shape != (n,) or a["label"].shape != (n,):
        raise DatasetError(f"{path}: exp, user, values and label disagree in length")
    labels = a["label"].astype(np.int16)
    values = values.astype(np.float32, copy=False)
    rate = float(a["sample_rate_hz"])
    cuts = np.flatnonzero(np.diff(exp)) + 1
    starts = np.concatenate(([0], cuts))
    streams = tuple(
        DeviceStream(
            f"hapt-e{int(exp[i]):02d}-u{int(user[i]):02d}",
            v,
            lab,
            rate,
            t0_ms=REPLAY_T0_MS,
            user=int(user[i]),
        )
        for i, v, lab in zip(starts, np.split(values, cuts), np.split(labels, cuts), strict=True)
    )
    return StreamDataset(
        "uci_hapt",
        tuple(str(c) for c in a["channels"]),
        tuple(str(c) for c in a["activities"]),
        rate,
        streams,
    )
