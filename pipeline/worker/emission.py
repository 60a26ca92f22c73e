"""The worker's output messages: which steps of a device's run get a prediction, and the JSON
of predictions, activity changes and dead letters (the wire format of ``docs``/README)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from streams.protocols import Message

Emit = Literal["every", "every_k", "on_change"]
MAX_STEPS_PER_MESSAGE = 500
"""steps of one device in one prediction message at most (Kafka refuses messages over 1 MB)"""


def chosen_steps(
    emit: Emit, every_k: int, seen_before: int, steps: int, changed: np.ndarray
) -> np.ndarray:
    """Positions (within a run of ``steps`` new samples) that get a prediction: all of them,
    every ``every_k``-th sample of the device's stream, or where the activity ``changed``."""
    if emit == "every":
        return np.arange(steps)
    if emit == "every_k":
        return np.flatnonzero((seen_before + np.arange(1, steps + 1)) % every_k == 0)
    return changed


def latency_ms(now_ms: float, kafka_ts_ms: float) -> float | None:
    """Milliseconds from the record's broker timestamp to now (None without one)."""
    return round(now_ms - kafka_ts_ms, 2) if not math.isnan(kafka_ts_ms) else None


def sample_messages(
    run, chosen: np.ndarray, probs: np.ndarray, top: np.ndarray, anomaly: np.ndarray | None,
    classes: Sequence[str], version: str, batch: int, now_ms: float,
) -> list[dict]:  # fmt: skip
    """The many-to-many prediction messages of one device's ``run`` (its ``probs`` and ``top``
    class per new sample, ``anomaly`` scores if the model has a next-step head). A device far
    behind has thousands of samples in one batch: several messages, each under the broker's
    size limit, together covering the run."""
    cuts = list(range(MAX_STEPS_PER_MESSAGE, len(chosen), MAX_STEPS_PER_MESSAGE))
    steps = len(probs)
    covered, out = 0, []
    for part in np.split(chosen, cuts):
        last = int(part[-1])
        end = last if last < int(chosen[-1]) else steps - 1
        message = {
            "kind": "sample",
            "device": run.device,
            "model": version,
            "batch": batch,
            "seq_first": int(run.seqs[covered]),
            "seq_last": int(run.seqs[end]),
            "seq": int(run.seqs[last]),
            "t_ms": float(run.times_ms[last]),
            "activity": classes[int(top[last])],
            "probs": np.round(probs[last], 6).tolist(),
            "latency_ms": latency_ms(now_ms, run.kafka_ts_ms),
        }
        if len(part) > 1:
            message["steps"] = {
                "seq": run.seqs[part].tolist(),
                "activity": top[part].tolist(),
                "probs": np.round(probs[part], 6).tolist(),
            }
        if anomaly is not None:
            window = anomaly[covered : end + 1]
            message["anomaly"] = round(float(np.nanmax(window, initial=0.0)), 4)
        out.append(message)
        covered = end + 1
    return out


def window_message(
    run, w: int, window: int, probs: np.ndarray, classes: Sequence[str], version: str,
    batch: int, now_ms: float,
) -> dict:  # fmt: skip
    """The many-to-one prediction of the window ending at new sample ``w`` of ``run``."""
    return {
        "kind": "window",
        "device": run.device,
        "model": version,
        "batch": batch,
        "seq_first": int(run.seqs[w]) - (window - 1),
        "seq_last": int(run.seqs[w]),
        "t_ms": float(run.times_ms[w]),
        "activity": classes[int(probs.argmax())],
        "probs": np.round(probs, 6).tolist(),
        "latency_ms": latency_ms(now_ms, run.kafka_ts_ms),
    }


def event_message(
    device: str, previous: str | None, current: str, seq: int, t_ms: float, version: str
) -> dict:
    """An activity change of ``device``."""
    return {"kind": "activity_change", "device": device, "model": version, "from": previous,
            "to": current, "seq": seq, "t_ms": t_ms}  # fmt: skip


def dead_letter(msg: Message, reason: str, detail: str) -> dict:
    """The dead-letter envelope of ``msg``: why, where it was, and its bytes in hex."""
    return {
        "reason": reason,
        "detail": detail,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
        "value_hex": msg.value.hex(),
    }


def encode(message: dict) -> bytes:
    """A message as the JSON bytes sent to Kafka."""
    return json.dumps(message).encode("utf-8")
