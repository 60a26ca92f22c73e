"""The worker's output messages: which steps of a device's run get a prediction, and the JSON
of predictions, activity changes and dead letters (the wire format of ``docs``/README)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import orjson

from streams.protocols import Message

Emit = Literal["every", "every_k", "on_change"]
MAX_STEPS_PER_MESSAGE = 500
"""steps of one device in one prediction message at most (Kafka refuses messages over 1 MB)"""
PROB_DECIMALS = 6
"""decimals of the probabilities in prediction messages (within 1e-6 of the model's float32)"""
SCORE_DECIMALS = 6
"""decimals of anomaly scores and thresholds in anomaly messages"""


def chosen_steps(
    emit: Emit, every_k: int, seen_before: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The steps of a batch that get a prediction under ``emit="every"`` (all) or
    ``"every_k"`` (every ``every_k``-th sample of each device's stream, whatever the batch
    boundaries; ``seen_before``: each run's samples before this batch): the positions within
    their runs, run after run, and how many each run has (``on_change`` is the activity
    tracker's)."""
    counts = np.asarray(counts, np.int64)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    if emit == "every":
        return within, counts
    keep = (np.repeat(np.asarray(seen_before, np.int64), counts) + within + 1) % every_k == 0
    owner = np.repeat(np.arange(len(counts)), counts)
    return within[keep], np.bincount(owner[keep], minlength=len(counts))


def latency_ms(now_ms: float, kafka_ts_ms: float) -> float | None:
    """Milliseconds from the record's broker timestamp to now (None without one)."""
    return round(now_ms - kafka_ts_ms, 2) if not math.isnan(kafka_ts_ms) else None


class Payload(NamedTuple):
    """One prediction message of a batch."""

    run: int
    """the index of the device's run in the batch"""
    data: bytes
    """the JSON message"""
    last: int
    """the position (within the run) of the message's last step"""
    anomaly: float | None
    """the highest next-step error over the steps the message covers, if the model has one"""


def sample_payloads(
    runs: Sequence, starts: np.ndarray, steps: np.ndarray, counts: Sequence[int],
    probs: np.ndarray, top: np.ndarray, anomaly: np.ndarray | None, classes: Sequence[str],
    version: str, batch: int, now_ms: float, delay_ms: float = 0.0,
) -> list[Payload]:  # fmt: skip
    """The many-to-many prediction messages of a batch, as JSON bytes, built without a dict or
    ``json.dumps`` per message: ``runs[i]``'s new samples start at row ``starts[i]`` of ``probs``
    and ``top`` (and ``anomaly``, the next-step head's scores, if any); ``steps`` holds the
    positions within their runs that get a prediction, ``counts[i]`` (at least one) of them for
    ``runs[i]``, run after run. A device far behind has thousands of samples in one batch:
    several messages, each under the broker's size limit, together cover its run.
    Probabilities have :data:`PROB_DECIMALS` decimals; ``delay_ms`` is the delay the labels
    were emitted with (:mod:`pipeline.worker.delay`)."""
    # every column the messages need gathered once, in C; the loop below only slices and joins
    all_seqs = np.concatenate([run.seqs for run in runs])
    lengths = np.array([len(run.seqs) for run in runs])
    first = np.cumsum(lengths) - lengths  # where each run starts in ``all_seqs``
    counts = list(counts)
    at = steps + np.repeat(first, counts)  # the chosen steps' positions in ``all_seqs``
    rows = at.tolist()
    seq_of = dict(zip(rows, all_seqs[at].tolist(), strict=True))
    time_of = dict(zip(rows, np.concatenate([run.times_ms for run in runs])[at].tolist(),
                       strict=True))  # fmt: skip
    text = _prob_rows(probs[steps + np.repeat(starts, counts)])
    tops = top[steps + np.repeat(starts, counts)].tolist()
    seq_text, top_text = [str(seq_of[r]) for r in rows], [str(t) for t in tops]
    run_first, run_last = all_seqs[first].tolist(), all_seqs[first + lengths - 1].tolist()
    first, offsets = first.tolist(), (np.asarray(starts) - np.array(first)).tolist()
    labels = [_json(c) for c in classes]
    tail = f',"model":{_json(version)},"batch":{batch},'
    delay = f',"delay_ms":{delay_ms:g}'
    out, k = [], 0
    for i, run in enumerate(runs):
        n, base, end_of_run = counts[i], first[i], first[i] + int(lengths[i]) - 1
        device = _json(run.device)
        lat = "null" if math.isnan(run.kafka_ts_ms) else repr(round(now_ms - run.kafka_ts_ms, 2))
        covered, seq_first = base, run_first[i]
        for lo in range(k, k + n, MAX_STEPS_PER_MESSAGE):
            hi = min(k + n, lo + MAX_STEPS_PER_MESSAGE)  # this message's steps: rows[lo:hi]
            last = rows[hi - 1]
            end = last if hi < k + n else end_of_run
            seq_last = seq_of[last] if hi < k + n else run_last[i]
            message = (
                f'{{"kind":"sample","device":{device}{tail}"seq_first":{seq_first},'
                f'"seq_last":{seq_last},"seq":{seq_of[last]},"t_ms":{time_of[last]!r},'
                f'"activity":{labels[tops[hi - 1]]},"probs":[{text[hi - 1]}],"latency_ms":{lat}'
                f"{delay}"
            )
            if hi - lo > 1:
                message += (
                    f',"steps":{{"seq":[{",".join(seq_text[lo:hi])}],'
                    f'"activity":[{",".join(top_text[lo:hi])}],'
                    f'"probs":[[{"],[".join(text[lo:hi])}]]}}'
                )
            score = None
            if anomaly is not None:
                window = anomaly[covered + offsets[i] : end + offsets[i] + 1]
                score = round(float(np.nanmax(window, initial=0.0)), 4)
                message += f',"anomaly":{score!r}'
            out.append(Payload(i, (message + "}").encode(), last - base, score))
            covered = end + 1
            if covered <= end_of_run:  # the run goes on in another message
                seq_first = int(all_seqs[covered])
        k += n
    return out


def _prob_rows(probs: np.ndarray) -> list[str]:
    """Each row of ``probs`` as the inside of a JSON array, ``PROB_DECIMALS`` decimals (one
    orjson call for the whole batch: ten times faster than formatting in Python)."""
    if not len(probs):
        return []
    rounded = np.round(probs.astype(np.float64), PROB_DECIMALS)
    text = orjson.dumps(rounded, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text[2:-2].split("],[")


@functools.lru_cache(maxsize=1 << 16)
def _json(value: str) -> str:
    """A string as a JSON string literal (device ids are mostly plain: no escaping needed)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return orjson.dumps(value).decode()


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
        "probs": np.round(probs.astype(np.float64), PROB_DECIMALS).tolist(),
        "latency_ms": latency_ms(now_ms, run.kafka_ts_ms),
    }


def anomaly_message(
    run, w: int, span: int, score: float, threshold: float, version: str, batch: int,
    now_ms: float,
) -> dict:  # fmt: skip
    """The anomaly detector's score of the ``span``-sample window ending at new sample ``w`` of
    ``run``: ``anomalous`` when the score is above the detector's ``threshold``. ``seq_first``
    is counted back ``span - 1`` samples from ``seq_last`` (like a window prediction's): where
    samples went missing inside the window, the window reaches further back."""
    return {
        "kind": "anomaly",
        "device": run.device,
        "model": version,
        "batch": batch,
        "seq_first": int(run.seqs[w]) - (span - 1),
        "seq_last": int(run.seqs[w]),
        "t_ms": float(run.times_ms[w]),
        "score": round(score, SCORE_DECIMALS),
        "threshold": round(threshold, SCORE_DECIMALS),
        "anomalous": bool(score > threshold),
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
    return orjson.dumps(message)
