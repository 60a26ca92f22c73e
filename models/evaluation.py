"""Classification metrics on annotated samples, as text, JSON and a confusion-matrix PNG; the
distribution of a seq2seq model's anomaly scores, as text, JSON and a histogram PNG; how well
anomaly scores tell faulty windows from clean ones (ROC-AUC, recall at a false-positive rate)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.exceptions import ModelsError
from models.plotting import png_axes


@dataclass(frozen=True)
class Evaluation:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    ``confusion[i, j]`` counts samples of true class ``i`` predicted as ``j``.

    >>> e = evaluate([0, 1, 1, -1], [0, 1, 0, 1], ("SIT", "WALK"))
    >>> e.accuracy, e.support.tolist()
    (0.6666666666666666, [1, 2])
    """

    classes: tuple[str, ...]
    confusion: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(self.classes)),
                         where=predicted > 0)  # fmt: skip

    @property
    def recall(self) -> np.ndarray:
        return np.divide(np.diag(self.confusion), self.support, out=np.zeros(len(self.classes)),
                         where=self.support > 0)  # fmt: skip

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes that occur in the true labels."""
        present = self.support > 0
        return float(self.f1[present].mean()) if present.any() else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "samples": int(self.confusion.sum()),
            "per_class": {
                name: {
                    "precision": float(self.precision[i]),
                    "recall": float(self.recall[i]),
                    "f1": float(self.f1[i]),
                    "support": int(self.support[i]),
                }
                for i, name in enumerate(self.classes)
            },
            "confusion": self.confusion.tolist(),
        }

    def to_text(self) -> str:
        """A plain-text report: the summary, per-class table and confusion matrix."""
        width = max(len(c) for c in self.classes)
        lines = [
            f"accuracy {self.accuracy:.4f}   macro-F1 {self.macro_f1:.4f}   "
            f"({int(self.confusion.sum()):,} annotated)",
            "",
            f"{'class':<{width}}  precision  recall     f1  support",
        ]
        for i, name in enumerate(self.classes):
            lines.append(
                f"{name:<{width}}  {self.precision[i]:9.3f}  {self.recall[i]:6.3f}  "
                f"{self.f1[i]:5.3f}  {int(self.support[i]):7d}"
            )
        lines += ["", "confusion (rows: true, columns: predicted, in class order)"]
        for i, name in enumerate(self.classes):
            lines.append(f"{name:<{width}}  " + " ".join(f"{v:6d}" for v in self.confusion[i]))
        return "\n".join(lines)


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    classes: Sequence[str],
) -> Evaluation:
    """Metrics over the samples whose true label is annotated (>= 0)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ModelsError(f"{y_true.size} labels but {y_pred.size} predictions")
    k = len(classes)
    mask = y_true >= 0
    if np.any(y_true[mask] >= k) or np.any((y_pred[mask] < 0) | (y_pred[mask] >= k)):
        raise ModelsError(f"labels and predictions must be class codes 0..{k - 1}")
    confusion = np.bincount(y_true[mask] * k + y_pred[mask], minlength=k * k).reshape(k, k)
    return Evaluation(tuple(classes), confusion)


def plot_confusion(evaluation: Evaluation, path: str | os.PathLike[str], title: str = "") -> Path:
    """Save the row-normalised confusion matrix (counts annotated) as a PNG."""
    cm = evaluation.confusion
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(evaluation.classes)
    with png_axes(path, (1.0 + 0.75 * k, 0.8 + 0.65 * k)) as ax:
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")  # fmt: skip
        ax.set_xticks(range(k), evaluation.classes, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k), evaluation.classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(
            title or f"accuracy {evaluation.accuracy:.3f}, macro-F1 {evaluation.macro_f1:.3f}",
            fontsize=9,
        )
    return Path(path)


@dataclass(frozen=True)
class ScoreSummary:
    """The anomaly scores of windows (one each) against the model's threshold, if it has one.

    >>> ScoreSummary(np.array([0.1, 0.2, 0.3, 1.0]), threshold=0.5).to_dict()["above_threshold"]
    0.25
    """

    scores: np.ndarray
    threshold: float | None = None

    def to_dict(self) -> dict[str, object]:
        s = self.scores
        empty = not len(s)
        above = None
        if self.threshold is not None and not empty:
            above = float(np.mean(s > self.threshold))
        return {
            "windows": int(len(s)),
            "mean": float("nan") if empty else float(np.mean(s)),
            "median": float("nan") if empty else float(np.median(s)),
            "p99": float("nan") if empty else float(np.quantile(s, 0.99)),
            "threshold": self.threshold,
            "above_threshold": above,
        }

    def to_text(self) -> str:
        d = self.to_dict()
        text = (
            f"anomaly scores of {d['windows']:,} windows (mean squared error, normalised units)\n"
            f"mean {d['mean']:.4f}   median {d['median']:.4f}   99th percentile {d['p99']:.4f}"
        )
        if d["above_threshold"] is not None:
            share, threshold = d["above_threshold"], self.threshold
            text += f"\n{share:.2%} of windows above the threshold {threshold:.4f}"
        return text


def plot_scores(summary: ScoreSummary, path: str | os.PathLike[str], title: str = "") -> Path:
    """Save a histogram of the anomaly scores (log scale), the threshold marked, as a PNG."""
    scores = np.maximum(summary.scores, 1e-12)
    with png_axes(path, (6.4, 3.6)) as ax:
        if len(scores):
            bins = np.geomspace(scores.min(), max(scores.max(), scores.min() * 1.01), 40)
            ax.hist(scores, bins=bins, color="C0")
            ax.set_xscale("log")
        if summary.threshold is not None:
            ax.axvline(summary.threshold, color="C3", linestyle="--", label="threshold")
            ax.legend()
        ax.set_xlabel("anomaly score (MSE, normalised units)")
        ax.set_ylabel("windows")
        ax.set_title(title or "anomaly scores", fontsize=9)
    return Path(path)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) for ``labels`` (1 =
    anomalous, 0 = normal): the chance that an anomalous window outscores a normal one, ties
    counting half (Mann-Whitney U over average ranks). NaN without both kinds.

    >>> roc_auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 0, 1, 1]))
    0.875
    """
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel() > 0
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float("nan")
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[group]  # 1-based, ties averaged
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def recall_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 0.01) -> float:
    """Share of anomalous windows (label 1) scoring above the threshold that ``fpr`` of the
    normal ones (label 0) exceed: their ``1 - fpr`` quantile. NaN without both kinds.

    >>> recall_at_fpr(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 0, 1, 1]), fpr=0.5)
    1.0
    """
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel() > 0
    if labels.all() or not labels.any():
        return float("nan")
    threshold = np.quantile(scores[~labels], 1.0 - fpr)
    return float(np.mean(scores[labels] > threshold))
