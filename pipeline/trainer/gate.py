"""The promotion gate: a candidate replaces the champion only if it is better on held-out devices.

Both models are scored on the same held-out windows (devices the trainer never trains on, see
:func:`pipeline.trainer.buffer.is_holdout`) the way workers run them: stream models by
per-sample accuracy over the annotated samples of each device's windows joined into one
recording (:func:`~pipeline.trainer.buffer.stitched`), the state carried from its first sample;
window models by the label of each window's last sample. A candidate with a non-finite weight or
output is refused whatever its score.

An anomaly detector (a seq2seq model, :mod:`models.seq2seq`) is judged by its mean anomaly score
(reconstruction or forecast error, lower is better) on the windows of its span cut from each
held-out device's recording, both models' errors measured in the champion's normalised units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.windowing import windows_from_recordings
from pipeline.exceptions import ConfigError
from pipeline.trainer.buffer import stitched

if TYPE_CHECKING:
    import keras

    from models.spec import ModelMeta
    from pipeline.trainer.buffer import Windows


@dataclass(frozen=True)
class GateConfig:
    """``margin``: how much higher (in accuracy, 0.01 = one point) the candidate must score
    than the champion; ``error_margin``: how much lower, relative to the champion's, an anomaly
    detector candidate's mean held-out error must be (0.05: at most 95 % of the champion's; 0:
    any lower; negative: up to that much higher is accepted); ``min_holdout_windows``: below
    this the gate does not judge at all."""

    margin: float = 0.0
    error_margin: float = 0.0
    min_holdout_windows: int = 20

    def __post_init__(self) -> None:
        if not -1.0 < self.margin < 1.0 or self.min_holdout_windows < 1:
            raise ConfigError("gate margin must be in (-1, 1) and min_holdout_windows >= 1")
        if not -1.0 < self.error_margin < 1.0:
            raise ConfigError(f"gate error_margin must be in (-1, 1), not {self.error_margin}")


@dataclass(frozen=True)
class Verdict:
    """What the gate decided and why, with the scores it compared."""

    promote: bool
    reason: str
    candidate_accuracy: float
    champion_accuracy: float
    holdout_windows: int
    code: str = ""
    """the reason as a short label: ``first_champion``, ``better``, ``not_better``,
    ``non_finite_weights`` or ``non_finite_outputs`` (for metrics)"""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DetectorVerdict:
    """What the gate decided for an anomaly detector and why, with the mean held-out errors
    (anomaly scores, lower is better) it compared; ``code`` as in :class:`Verdict`."""

    promote: bool
    reason: str
    candidate_error: float
    champion_error: float
    holdout_windows: int
    """held-out buffer windows"""
    scored_windows: int
    """windows of the detector's span cut from them and scored"""
    code: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def scores(model: keras.Model, meta: ModelMeta, windows: Windows) -> tuple[np.ndarray, ...]:
    """Per window: (correct, scored) counts, and whether every output was finite.

    Stream models score each annotated sample, the state from zero in each window (a quick
    per-window signal, as for drift); window models score each window whose last sample is
    labelled (``scored`` is 0 or 1).
    """
    n = len(windows.devices)
    if n == 0:
        return np.zeros(0), np.zeros(0), True
    from models.training import predict_streams  # Keras: not at start-up

    if meta.spec.setup == "stream":
        probs = np.stack(predict_streams(model, list(windows.values)))
        labels = windows.labels.astype(np.int64)
        mask = labels >= 0
        hits = ((probs.argmax(-1) == labels) & mask).sum(axis=1)
        return hits, mask.sum(axis=1), bool(np.isfinite(probs).all())
    y = windows.labels[:, -1].astype(np.int64)
    probs = np.asarray(model.predict(windows.values[:, -meta.window :], batch_size=256, verbose=0))
    return (
        (probs.argmax(-1) == y) & (y >= 0),
        (y >= 0).astype(np.int64),
        bool(np.isfinite(probs).all()),
    )


def holdout_accuracy(
    model: keras.Model, meta: ModelMeta, holdout: Windows, stride: int | None = None
) -> tuple[float, bool]:
    """(accuracy over every scored sample or window of ``holdout``, whether outputs were finite).

    Stream models run over each device's windows stitched with the joiner's ``stride`` (None:
    windows do not overlap), the state carried as in a worker.
    """
    from models.training import masked_accuracy, predict_streams  # Keras: not at start-up

    if meta.spec.setup == "stream":
        recordings, _ = stitched(holdout, stride or holdout.values.shape[1])
        probs = predict_streams(model, [v for v, _ in recordings])
        finite = all(np.isfinite(p).all() for p in probs)
        return masked_accuracy(probs, [y for _, y in recordings]), finite
    hits, scored, finite = scores(model, meta, holdout)
    total = int(np.sum(scored))
    return (float(np.sum(hits)) / total if total else float("nan")), finite


def window_examples(meta: ModelMeta, windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """A window model's inputs (the last ``meta.window`` samples) and labels (the last
    sample's), for the windows whose last sample is labelled."""
    y = windows.labels[:, -1].astype(np.int32)
    keep = y >= 0
    return windows.values[keep, -meta.window :], y[keep]


def judge(
    candidate: keras.Model,
    champion: keras.Model | None,
    meta: ModelMeta,
    holdout: Windows,
    config: GateConfig | None = None,
    *,
    stride: int | None = None,
) -> Verdict:
    """Compare ``candidate`` with ``champion`` (None: there is none yet) on ``holdout``, whose
    windows begin every ``stride`` samples (None: they do not overlap)."""
    cfg = config or GateConfig()
    n = len(holdout.devices)
    if not all(np.isfinite(w).all() for w in candidate.get_weights()):
        return Verdict(
            False, "non-finite weights", float("nan"), float("nan"), n, "non_finite_weights"
        )
    cand, finite = holdout_accuracy(candidate, meta, holdout, stride)
    champ = (
        holdout_accuracy(champion, meta, holdout, stride)[0]
        if champion is not None
        else float("nan")
    )
    if not finite or not np.isfinite(cand):
        reason = "non-finite outputs on the held-out slice"
        return Verdict(False, reason, cand, champ, n, "non_finite_outputs")
    if champion is None:
        return Verdict(True, "first champion", cand, champ, n, "first_champion")
    if cand > champ + cfg.margin:
        reason = f"better by {cand - champ:+.4f} (margin {cfg.margin})"
        return Verdict(True, reason, cand, champ, n, "better")
    return Verdict(
        False,
        f"not better by the margin: {cand:.4f} vs champion {champ:.4f} (margin {cfg.margin})",
        cand,
        champ,
        n,
        "not_better",
    )


def detector_windows(meta: ModelMeta, windows: Windows, stride: int | None = None) -> np.ndarray:
    """Raw windows of a seq2seq model's span every ``meta.stride`` samples of each device's
    ``windows`` joined into one recording (``stride``: the joiner's, None: no overlap)."""
    from models.seq2seq import span  # Keras: not at start-up

    recordings, _ = stitched(windows, stride or windows.values.shape[1])
    return windows_from_recordings(recordings, span(meta), meta.stride)[0]


def detector_errors(
    model: keras.Model, meta: ModelMeta, windows: np.ndarray, units: ModelMeta | None = None
) -> np.ndarray:
    """Per raw window, ``model``'s mean squared error in the normalised units of ``units``
    (another model's metadata; None: ``meta``'s, which is the anomaly score)."""
    from models.seq2seq import normalised  # Keras: not at start-up

    units = units or meta
    predicted = model.predict(windows[:, : meta.window], batch_size=512, verbose=0)
    error = predicted - normalised(meta, windows)[:, -predicted.shape[1] :]
    error *= np.asarray(meta.std, np.float32) / np.asarray(units.std, np.float32)
    return np.mean(np.square(error), axis=(1, 2))


def judge_detector(
    candidate: keras.Model,
    candidate_meta: ModelMeta,
    champion: keras.Model,
    champion_meta: ModelMeta,
    holdout: Windows,
    config: GateConfig | None = None,
    *,
    stride: int | None = None,
) -> DetectorVerdict:
    """Compare the anomaly detector ``candidate`` with ``champion`` by their mean error on the
    windows of ``holdout`` (which begin every ``stride`` samples; None: no overlap): promoted
    when it is below ``(1 - error_margin)`` times the champion's. A candidate trained from
    scratch has a normalisation of its own: its error is measured in the champion's units."""
    cfg = config or GateConfig()
    n = len(holdout.devices)
    if not all(np.isfinite(w).all() for w in candidate.get_weights()):
        nan = float("nan")
        return DetectorVerdict(False, "non-finite weights", nan, nan, n, 0, "non_finite_weights")
    X = detector_windows(champion_meta, holdout, stride)
    cand = float(np.mean(detector_errors(candidate, candidate_meta, X, units=champion_meta)))
    champ = float(np.mean(detector_errors(champion, champion_meta, X)))
    if not np.isfinite(cand):
        reason = "non-finite outputs on the held-out slice"
        return DetectorVerdict(False, reason, cand, champ, n, len(X), "non_finite_outputs")
    if not np.isfinite(champ):
        reason = "the champion's outputs on the held-out slice are not finite"
        return DetectorVerdict(True, reason, cand, champ, n, len(X), "better")
    if cand < champ * (1.0 - cfg.error_margin):
        reason = (f"error lower: {cand:.4g} vs champion {champ:.4g} "
                  f"(error_margin {cfg.error_margin})")  # fmt: skip
        return DetectorVerdict(True, reason, cand, champ, n, len(X), "better")
    return DetectorVerdict(
        False,
        f"error not lower by the margin: {cand:.4g} vs champion {champ:.4g} "
        f"(error_margin {cfg.error_margin})",
        cand,
        champ,
        n,
        len(X),
        "not_better",
    )
