"""Wiring datasets into training and evaluation (``models`` and ``streams`` never meet directly)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.diagnostics import attention_weights, plot_attention
from models.evaluation import Evaluation, ScoreSummary, evaluate, plot_confusion, plot_scores
from models.refine import refined, refiner_inputs
from models.seq2seq import anomaly_scores, span
from models.smoothing import as_served, lag_samples
from models.spec import ModelMeta
from models.training import predict_streams
from models.windowing import windows_from_recordings
from pipeline.exceptions import ConfigError
from streams.datasets import HAPT_TEST_USERS, split_by_user
from streams.datasets.base import StreamDataset

if TYPE_CHECKING:
    import keras

OFFICIAL_SPLIT_DATASETS = ("uci_har", "uci_hapt")


def recordings(dataset: StreamDataset) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
    """Every stream as ``(values, labels)`` and its user (-1 when unknown).

    A gap in a stream's sequence numbers is closed up: the model sees the samples in order.
    """
    recs = [(s.values, s.labels) for s in dataset.streams]
    return recs, [s.user if s.user is not None else -1 for s in dataset.streams]


def train_test_split(
    dataset: StreamDataset, test_users: Sequence[int] | None, fraction: float = 0.3, seed: int = 0
) -> tuple[StreamDataset, StreamDataset]:
    """Split by user: the given users, the official split for UCI data, else a seeded fraction."""
    if test_users is None:
        if dataset.name in OFFICIAL_SPLIT_DATASETS:
            test_users = HAPT_TEST_USERS
        else:
            users = np.array(dataset.users)
            if len(users) < 2:
                raise ConfigError(f"{dataset.name}: needs at least two users to split by user")
            rng = np.random.default_rng(seed)
            count = max(1, int(round(fraction * len(users))))
            test_users = sorted(rng.choice(users, size=count, replace=False).tolist())
    train, test = split_by_user(dataset, test_users)
    if not train.streams or not test.streams:
        raise ConfigError(f"split by users {list(test_users)} leaves one side empty")
    return train, test


def check_compatible(meta: ModelMeta, dataset: StreamDataset) -> np.ndarray:
    """Raise unless the dataset has the model's channels; return dataset→model class codes
    (none for a seq2seq model, which has no classes)."""
    if tuple(dataset.channels) != tuple(meta.channels):
        raise ConfigError(
            f"the model reads channels {list(meta.channels)}, the dataset has "
            f"{list(dataset.channels)}"
        )
    if meta.spec.setup == "seq2seq":
        return np.zeros(0, np.int16)
    unknown = [a for a in dataset.activities if a not in meta.classes]
    if unknown:
        raise ConfigError(f"activities {unknown} are not among the model's classes")
    return np.array([meta.classes.index(a) for a in dataset.activities], dtype=np.int16)


def _to_model_codes(labels: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    return np.where(labels >= 0, mapping[np.maximum(labels, 0)], -1).astype(np.int16)


@dataclass(frozen=True)
class AttentionExamples:
    """A few windows an attention model classified, with its weights over their steps."""

    windows: np.ndarray
    weights: np.ndarray
    channels: tuple[str, ...]
    titles: tuple[str, ...]


@dataclass
class EvaluationRun:
    """An evaluation (classification metrics, or a seq2seq model's anomaly scores) plus, for
    stream models, accuracy by third of each recording, and for attention models a few windows
    with their attention weights."""

    evaluation: Evaluation | ScoreSummary
    thirds: list[float] = field(default_factory=list)
    unit: str = "window"
    attention: AttentionExamples | None = None
    delayed: dict[str, float] | None = None
    """a stream model trained with a refiner: its labels' figures at the refiner's delay
    (:func:`evaluate_delayed`)"""

    def to_dict(self) -> dict[str, object]:
        out = {"unit": self.unit, **self.evaluation.to_dict()}
        if self.thirds:
            out["accuracy_by_third"] = self.thirds
        if self.delayed:
            out["delayed"] = self.delayed
        return out


def evaluate_model(model: keras.Model, meta: ModelMeta, dataset: StreamDataset) -> EvaluationRun:
    """Window models: every window (meta's length and stride) of every stream; stream models:
    every annotated sample, each recording run from its start with the state never reset;
    seq2seq models: the anomaly scores of every window (labels ignored)."""
    mapping = check_compatible(meta, dataset)
    if meta.spec.setup == "seq2seq":
        X, _, _ = windows_from_recordings(recordings(dataset)[0], span(meta), meta.stride)
        return EvaluationRun(ScoreSummary(anomaly_scores(model, meta, X), meta.threshold))
    recs = [(v, _to_model_codes(y, mapping)) for v, y in recordings(dataset)[0]]
    if meta.spec.setup == "window":
        X, y, _ = windows_from_recordings(recs, meta.window, meta.stride)
        predicted = model.predict(X, batch_size=512, verbose=0).argmax(-1)
        evaluation = evaluate(y, predicted, meta.classes)
        examples = None
        if meta.spec.architecture == "attention" and len(X):
            examples = attention_examples(model, meta, X, y, predicted)
        return EvaluationRun(evaluation, unit="window", attention=examples)

    probs = predict_streams(model, [v for v, _ in recs])
    y_all = np.concatenate([y for _, y in recs])
    pred_all = np.concatenate([p.argmax(-1) for p in probs])
    thirds = []
    for k in range(3):
        parts = [
            (p[len(p) * k // 3 : len(p) * (k + 1) // 3], y[len(y) * k // 3 : len(y) * (k + 1) // 3])
            for p, (_, y) in zip(probs, recs, strict=True)
        ]
        yk = np.concatenate([y for _, y in parts])
        pk = np.concatenate([p.argmax(-1) for p, _ in parts])
        thirds.append(evaluate(yk, pk, meta.classes).accuracy)
    return EvaluationRun(evaluate(y_all, pred_all, meta.classes), thirds, unit="sample")


def evaluate_delayed(model: keras.Model, meta: ModelMeta, refiner: tuple, dataset: StreamDataset,
                     delay_ms: float) -> dict[str, float]:  # fmt: skip
    """A stream model's labels ``delay_ms`` late on every annotated sample of ``dataset``, each
    recording from its start: macro-F1 and accuracy of the smoother's (what a worker emits
    without a refiner) and of their mean with the ``refiner``'s (its model and metadata)."""
    mapping = check_compatible(meta, dataset)
    recs = [(v, _to_model_codes(y, mapping)) for v, y in recordings(dataset)[0]]
    probs = predict_streams(model, [v for v, _ in recs])
    served = np.concatenate(as_served(probs, meta.grammar, delay_ms, meta.rate_hz))
    lag = lag_samples(delay_ms, meta.rate_hz)
    mine = np.concatenate(refined(refiner[0], refiner_inputs(probs, meta.grammar), lag))
    y = np.concatenate([y for _, y in recs])
    out = {}
    for name, p in (("smoother", served), ("refined", (mine + served) / 2)):
        ev = evaluate(y, p.argmax(-1), meta.classes)
        out[f"{name}_macro_f1"], out[f"{name}_accuracy"] = ev.macro_f1, ev.accuracy
    return out


def attention_examples(model, meta: ModelMeta, X, y, predicted, count: int = 4):
    """Up to ``count`` windows, the first of each true class first, with their weights."""
    labelled = np.flatnonzero(y >= 0)
    first = labelled[np.unique(y[labelled], return_index=True)[1]]
    pick = np.concatenate([first, np.setdiff1d(np.arange(len(X)), first)])[:count]
    titles = tuple(
        f"true {meta.classes[t] if t >= 0 else 'unlabelled'}, predicted {meta.classes[p]}"
        for t, p in zip(y[pick], predicted[pick], strict=True)
    )
    weights = attention_weights(model, X[pick])
    return AttentionExamples(X[pick], weights, tuple(meta.channels), titles)


def write_evaluation(run: EvaluationRun, out_dir, title: str = "") -> list[str]:
    """``metrics.json``, ``evaluation.txt`` and ``confusion.png`` (a seq2seq model's:
    ``scores.png``, a histogram of its anomaly scores) in ``out_dir``, plus ``attention.png``
    for an attention model; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    text = run.evaluation.to_text()
    if run.thirds:
        text += "\n\naccuracy by third of each recording: " + ", ".join(
            f"{a:.4f}" for a in run.thirds
        )
    (out / "evaluation.txt").write_text(text + "\n")
    if isinstance(run.evaluation, ScoreSummary):
        pngs = [plot_scores(run.evaluation, out / "scores.png", title)]
    else:
        pngs = [plot_confusion(run.evaluation, out / "confusion.png", title)]
    if (a := run.attention) is not None and len(a.windows):
        pngs.append(plot_attention(a.windows, a.weights, out / "attention.png", a.channels,
                                   a.titles))  # fmt: skip
    return [str(out / "metrics.json"), str(out / "evaluation.txt"), *map(str, pngs)]
