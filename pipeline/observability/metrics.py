"""Prometheus metrics of a worker and of a trainer (prefix ``harstream_``, units in names).

Each object owns its :class:`~prometheus_client.CollectorRegistry` (with the process and
platform collectors), so several workers in one process (tests, the demo) never share
counters. The worker feeds :class:`WorkerMetrics` once per batch with a
:class:`~pipeline.observability.report.BatchReport`; nothing is observed per sample.

>>> m = WorkerMetrics()
>>> m.samples.inc(3)
>>> b"harstream_samples_total 3.0" in m.exposition()
True
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from pipeline.observability.report import BatchReport, Detections, SwapReport

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
ANOMALY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DETECTOR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)
"""a mean squared error in normalised units, log-spaced"""
TRAINING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
}


class _Metrics:
    """A registry of one's own, with the process and platform collectors."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:  # one set per process: a second one would repeat the same series
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every sample name this registry exports (``_total``, ``_bucket`` ... included),
        labelled metrics with no series yet among them."""
        out = set()
        for family in self.registry.collect():
            out.update(s.name for s in family.samples)
            out.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        return out


class BulkHistogram:
    """A histogram fed a whole array at a time (one NumPy call per batch, not one per value).

    >>> r = CollectorRegistry()
    >>> h = BulkHistogram("demo_seconds", "demo", (0.1, 1.0), r)
    >>> h.observe_many(np.array([0.05, 0.5, 5.0]))
    >>> r.get_sample_value("demo_seconds_bucket", {"le": "1.0"})
    2.0
    """

    def __init__(self, name: str, documentation: str, buckets, registry) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Count every finite value of ``values``."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if not len(v):
            return
        counts = np.bincount(np.searchsorted(self.bounds, v), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(v.sum())

    def observe(self, value: float) -> None:
        self.observe_many(np.array([value]))

    def collect(self):
        with self._lock:
            cumulative, total = np.cumsum(self._counts).astype(float).tolist(), self._sum
        edges = [*(_le(b) for b in self.bounds), "+Inf"]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(edges, cumulative, strict=True)), total)
        return [family]

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation)]


def _le(bound: float) -> str:
    return repr(float(bound))


class _Combined:
    def __init__(self, parts) -> None:
        self.parts = parts

    def exposition(self) -> bytes:
        return b"".join(p.exposition() for p in self.parts)


def combined(*parts: _Metrics) -> _Combined:
    """One exposition of several registries (a worker and a trainer in one process)."""
    return _Combined(parts)


class WorkerMetrics(_Metrics):
    """What a worker counts: input, dead letters, latency, lag, devices, predictions, swaps,
    and the scores of the anomaly detector it serves (if any)."""

    def __init__(self, process: bool = True) -> None:
        super().__init__(process)
        r = self.registry
        self.messages = Counter("harstream_messages", "Kafka messages polled", registry=r)
        self.records = Counter("harstream_records", "Sensor records decoded", registry=r)
        self.samples = Counter(
            "harstream_samples", "Sensor samples applied to device states", registry=r
        )
        self.decode_errors = Counter(
            "harstream_decode_errors", "Records that failed to decode, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "harstream_dead_letters", "Records sent to the dead-letter topic, by reason",
            ["reason"], registry=r,
        )  # fmt: skip
        self.duplicate_samples = Counter(
            "harstream_duplicate_samples", "Redelivered samples skipped (already applied)",
            registry=r,
        )  # fmt: skip
        self.missing_samples = Counter(
            "harstream_missing_samples", "Samples never received (sequence gaps)", registry=r
        )
        self.restarts = Counter(
            "harstream_device_restarts", "Devices that counted again from the start (a new "
            "stream, the device reset)", registry=r,
        )  # fmt: skip
        self.batch_records = Histogram(
            "harstream_batch_records", "Records per batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.step = Histogram(
            "harstream_step_duration_seconds",
            "Time to advance every device's state and predict, per batch",
            buckets=STEP_BUCKETS, registry=r,
        )  # fmt: skip
        self.latency = BulkHistogram(
            "harstream_event_to_prediction_seconds",
            "From the broker timestamp of a record to the prediction it led to",
            LATENCY_BUCKETS, r,
        )  # fmt: skip
        self.lag = Gauge(
            "harstream_consumer_lag_records", "Records not yet consumed, per partition",
            ["topic", "partition"], registry=r,
        )  # fmt: skip
        self.devices = Gauge("harstream_active_devices", "Devices holding a state", registry=r)
        self.evictions = Counter(
            "harstream_device_evictions", "Device states evicted (idle or over capacity)",
            registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            "harstream_predictions", "Predictions emitted, by kind and activity",
            ["kind", "activity"], registry=r,
        )  # fmt: skip
        self.changes = Counter(
            "harstream_activity_changes", "Activity-change events, by the new activity",
            ["activity"], registry=r,
        )  # fmt: skip
        self.anomaly = BulkHistogram(
            "harstream_anomaly_score",
            "The stream model's next-step prediction error per emitted prediction "
            "(not the seq2seq detector's: harstream_detector_score)",
            ANOMALY_BUCKETS, r,
        )  # fmt: skip
        self.detector_score = BulkHistogram(
            "harstream_detector_score",
            "The seq2seq anomaly detector's score per scored window (mean squared error, "
            "normalised units; not the stream model's next-step error: harstream_anomaly_score)",
            DETECTOR_BUCKETS, r,
        )  # fmt: skip
        self.detector_flagged = Counter(
            "harstream_detector_flagged",
            "Windows the seq2seq anomaly detector flagged (score over its threshold)", registry=r,
        )  # fmt: skip
        self.detector_threshold = Gauge(
            "harstream_detector_threshold",
            "The served seq2seq anomaly detector's threshold on harstream_detector_score",
            registry=r,
        )  # fmt: skip
        self.model = Info("harstream_model", "The model version served", ["slot"], registry=r)
        self.swaps = Counter("harstream_swaps", "Hot swaps to a new model version", registry=r)
        self.swap_pause = Histogram(
            "harstream_swap_pause_seconds", "Hot-path interruptions caused by a swap",
            buckets=PAUSE_BUCKETS, registry=r,
        )  # fmt: skip
        self.checkpointed = Counter(
            "harstream_checkpointed_states", "Device states written to the state topic",
            registry=r,
        )  # fmt: skip
        self.restored = Counter(
            "harstream_restored_states", "Device states restored on partition assignment",
            registry=r,
        )  # fmt: skip
        self.restore = Histogram(
            "harstream_restore_duration_seconds", "Time to restore the devices of new partitions",
            buckets=PAUSE_BUCKETS + (2.5, 5.0, 10.0, 30.0), registry=r,
        )  # fmt: skip
        self._evictions = 0
        self._lag_labels: set[tuple[str, str]] = set()

    def serving(self, slot: str, version: str) -> None:
        """Record that ``slot`` (stream or window) now serves ``version``."""
        self.model.labels(slot=slot).info({"version": version})

    def observe(self, report: BatchReport) -> None:
        """Account for one batch."""
        self.messages.inc(report.messages)
        self.records.inc(report.records)
        self.samples.inc(report.samples)
        if report.messages:
            self.batch_records.observe(report.records)
        if report.samples:
            self.step.observe(report.step_s)
        for reason, n in report.dead_letters.items():
            self.dead_letters.labels(reason=reason).inc(n)
        for reason, n in report.decode_errors.items():
            self.decode_errors.labels(reason=reason).inc(n)
        self.duplicate_samples.inc(report.duplicate_samples)
        self.missing_samples.inc(report.missing_samples)
        self.restarts.inc(report.restarts)
        self.latency.observe_many(report.latency_ms / 1000.0)
        self.devices.set(report.devices)
        if report.evictions > self._evictions:
            self.evictions.inc(report.evictions - self._evictions)
        self._evictions = report.evictions
        if report.lag is not None:
            self._set_lag(report.lag)
        for kind, counts in report.activity_counts.items():
            for activity, n in counts.items():
                self.predictions.labels(kind=kind, activity=activity).inc(n)
        for event in report.events:
            self.changes.labels(activity=event.to).inc()
        if report.predictions is not None and report.predictions.anomaly is not None:
            self.anomaly.observe_many(report.predictions.anomaly)
        if report.detections is not None:
            self._detected(report.detections)
        for swap in report.swaps:
            self.on_swap(swap)
        self.checkpointed.inc(report.checkpointed)
        for devices, seconds in report.restores:
            self.restored.inc(devices)
            self.restore.observe(seconds)

    def _detected(self, d: Detections) -> None:
        self.detector_score.observe_many(d.score)
        self.detector_flagged.inc(int(np.count_nonzero(d.flagged)))
        self.detector_threshold.set(d.threshold)

    def on_swap(self, swap: SwapReport) -> None:
        self.swaps.inc()
        for pause in swap.pauses_ms:
            self.swap_pause.observe(pause / 1000.0)
        self.serving(swap.slot, swap.version)

    def _set_lag(self, lag: dict) -> None:
        now = {(tp.topic, str(tp.partition)) for tp in lag}
        for gone in self._lag_labels - now:  # partitions this worker no longer owns
            self.lag.remove(*gone)
        for tp, n in lag.items():
            self.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(n)
        self._lag_labels = now


class TrainerMetrics(_Metrics):
    """What the trainer counts: input, buffer, retrains and the gate's verdicts."""

    def __init__(self, process: bool = True) -> None:
        super().__init__(process)
        r = self.registry
        self.records = Counter(
            "harstream_trainer_records", "Labelled sensor records consumed", registry=r
        )
        self.windows = Gauge(
            "harstream_trainer_buffered_windows", "Labelled windows in the training buffer",
            registry=r,
        )  # fmt: skip
        self.online_accuracy = Gauge(
            "harstream_trainer_online_accuracy_ratio",
            "The champion's accuracy on arriving labelled windows (what drift detection watches)",
            registry=r,
        )  # fmt: skip
        self.drift = Counter(
            "harstream_trainer_drift_detections", "Drift detector alarms", registry=r
        )
        self.runs = Counter(
            "harstream_trainer_runs", "Retrains, by what triggered them", ["trigger"], registry=r
        )
        self.promotions = Counter(
            "harstream_trainer_promotions", "Candidates promoted to champion", registry=r
        )
        self.rejections = Counter(
            "harstream_trainer_rejections", "Candidates the gate rejected, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "harstream_trainer_training_duration_seconds", "Wall time of one retrain",
            buckets=TRAINING_BUCKETS, registry=r,
        )  # fmt: skip
        self.champion_accuracy = Gauge(
            "harstream_trainer_champion_accuracy_ratio",
            "The champion's accuracy on the held-out devices at the last retrain", registry=r,
        )  # fmt: skip
        self.candidate_accuracy = Gauge(
            "harstream_trainer_candidate_accuracy_ratio",
            "The last candidate's accuracy on the held-out devices", registry=r,
        )  # fmt: skip
        self.champion = Info("harstream_trainer_champion", "The champion version", registry=r)
        self.detector_outcomes = Counter(
            "harstream_trainer_detector_retrains",
            "Anomaly detector retrains, by the gate's verdict (promoted, or the reason it was not)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.detector_errors = Gauge(
            "harstream_trainer_detector_error",
            "Mean anomaly score on the held-out devices' windows at the last detector retrain",
            ["model"], registry=r,
        )  # fmt: skip

    def progress(self, records: int, windows: int, online_accuracy: float | None) -> None:
        """Account for consumed records and the buffer's size."""
        self.records.inc(records)
        self.windows.set(windows)
        if online_accuracy is not None:
            self.online_accuracy.set(online_accuracy)

    def retrained(self, trigger: str, seconds: float, verdict) -> None:
        """Account for one retrain and the gate's :class:`~pipeline.trainer.gate.Verdict`."""
        self.runs.labels(trigger=trigger).inc()
        self.duration.observe(seconds)
        if verdict.promote:
            self.promotions.inc()
        else:
            self.rejections.labels(reason=verdict.code).inc()
        if np.isfinite(verdict.champion_accuracy):
            self.champion_accuracy.set(verdict.champion_accuracy)
        if np.isfinite(verdict.candidate_accuracy):
            self.candidate_accuracy.set(verdict.candidate_accuracy)

    def detector_retrained(self, verdict) -> None:
        """Account for one anomaly detector retrain (its
        :class:`~pipeline.trainer.gate.DetectorVerdict`)."""
        self.detector_outcomes.labels(outcome="promoted" if verdict.promote else verdict.code).inc()
        for model, error in (("champion", verdict.champion_error),
                             ("candidate", verdict.candidate_error)):  # fmt: skip
            if np.isfinite(error):
                self.detector_errors.labels(model=model).set(error)
