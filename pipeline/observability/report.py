"""What a worker tells its observers (metrics, the dashboard) once per batch.

A worker builds one :class:`BatchReport` per batch from arrays it already has and hands it to
each :class:`Observer`; observers never see a per-sample Python object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from streams.protocols import TopicPartition


@dataclass(frozen=True)
class Predictions:
    """The stream predictions one batch emitted: one row per device message (its newest step)."""

    devices: list[str]
    seqs: np.ndarray
    t_ms: np.ndarray
    activity: np.ndarray
    """index into ``classes``"""
    confidence: np.ndarray
    label: np.ndarray
    """the record's label at that sample, -1 if unlabelled"""
    anomaly: np.ndarray | None
    classes: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class Detections:
    """The windows an anomaly detector (a seq2seq model) scored in one batch: one row each."""

    devices: list[str]
    seq_first: np.ndarray
    seq_last: np.ndarray
    """the device sequence numbers the window spans"""
    t_ms: np.ndarray
    """event time of the window's last sample"""
    score: np.ndarray
    flagged: np.ndarray
    """``score > threshold``"""
    threshold: float
    version: str


@dataclass(frozen=True)
class ChangeEvent:
    device: str
    previous: str | None
    to: str
    seq: int
    t_ms: float
    version: str


@dataclass(frozen=True)
class SwapReport:
    slot: str
    """``stream`` or ``window``"""
    version: str
    previous: str
    batch: int
    pauses_ms: tuple[float, ...]


@dataclass
class BatchReport:
    """One batch, as counts and arrays."""

    batch: int
    messages: int = 0
    records: int = 0
    samples: int = 0
    step_s: float = 0.0
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dead_letters: Counter = field(default_factory=Counter)
    decode_errors: Counter = field(default_factory=Counter)
    duplicate_samples: int = 0
    missing_samples: int = 0
    restarts: int = 0
    """devices that counted again from the start (a new stream each)"""
    devices: int = 0
    evictions: int = 0
    """evictions so far (a running total)"""
    lag: dict[TopicPartition, int] | None = None
    """records behind the end of each owned partition, when the source knows"""
    activity_counts: dict[str, Counter] = field(default_factory=dict)
    """per kind (``sample``, ``window``): predictions emitted per activity"""
    predictions: Predictions | None = None
    detections: Detections | None = None
    """the anomaly detector's scored windows, when the worker serves one"""
    events: list[ChangeEvent] = field(default_factory=list)
    swaps: list[SwapReport] = field(default_factory=list)
    checkpointed: int = 0
    """device states written to the state topic"""
    restores: list[tuple[int, float]] = field(default_factory=list)
    """(devices, seconds) of each restore on assignment"""
    wall_time: float = 0.0


class Observer(Protocol):
    """Anything that follows a worker batch by batch."""

    def observe(self, report: BatchReport) -> None: ...


class BatchCollector:
    """Gathers what one batch did, message by message, into a :class:`BatchReport`."""

    def __init__(self) -> None:
        self.start(0)

    def start(self, batch: int) -> None:
        self.report = BatchReport(batch)
        self._rows: list[tuple] = []
        self._anomaly: list[float] = []
        self._latency: list[float] = []

    def dead_letter(self, reason: str, decode: bool) -> None:
        self.report.dead_letters[reason] += 1
        if decode:
            self.report.decode_errors[reason] += 1

    def latency(self, ms: list[float]) -> None:
        """The end-to-end latencies of this batch's records."""
        self._latency.extend(ms)

    def predicted(self, kind: str, classes: tuple[str, ...], top: np.ndarray) -> None:
        """Count the predictions (``top`` class indices) of one kind emitted in this batch."""
        if len(top):
            counts = np.bincount(top, minlength=len(classes))
            tally = self.report.activity_counts.setdefault(kind, Counter())
            tally.update({classes[i]: int(n) for i, n in enumerate(counts.tolist()) if n})

    def sample(self, device: str, seq: int, t_ms: float, top: int, confidence: float,
               label: int, anomaly: float | None) -> None:  # fmt: skip
        """One stream prediction message (its newest step), for the fleet view."""
        self._rows.append((device, seq, t_ms, top, confidence, label))
        if anomaly is not None:
            self._anomaly.append(anomaly)

    def detected(self, detections: Detections) -> None:
        """The windows the anomaly detector scored in this batch."""
        self.report.detections = detections

    def event(self, event: ChangeEvent) -> None:
        self.report.events.append(event)

    def finish(self, classes: tuple[str, ...], version: str, **counts) -> BatchReport:
        """The report, with the batch-level ``counts`` (messages, records, samples...)."""
        r = self.report
        for key, value in counts.items():
            setattr(r, key, value)
        r.latency_ms = np.asarray(self._latency, dtype=np.float64)
        if self._rows:
            devices, seqs, t_ms, top, conf, label = zip(*self._rows, strict=True)
            anomaly = np.asarray(self._anomaly) if len(self._anomaly) == len(devices) else None
            r.predictions = Predictions(
                list(devices), np.asarray(seqs), np.asarray(t_ms), np.asarray(top),
                np.asarray(conf), np.asarray(label), anomaly, classes, version,
            )  # fmt: skip
        return r
