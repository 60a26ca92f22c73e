"""The live fleet view behind the dashboard: what every device is doing, and how the worker runs.

A :class:`FleetView` is a worker :class:`~pipeline.observability.report.Observer`. Once per
batch it folds the batch's prediction rows, and the windows the anomaly detector scored, into flat
per-device arrays (vectorised, one row per emitted message or scored window, never per sample);
the status server reads :meth:`FleetView.snapshot` and :meth:`FleetView.device` from its own
threads. Memory is bounded for any fleet size: at most ``max_devices`` devices (idle ones are
forgotten) and ``timeline_devices`` timelines.

Without an anomaly detector (no :class:`~pipeline.observability.report.Detections` yet) nothing
detector-related appears: the snapshot, its device list and :meth:`FleetView.device` gain a
``detector`` key only once there is something to put in it.

>>> import numpy as np
>>> from pipeline.observability.report import BatchReport, Predictions
>>> rows = Predictions(["a", "b"], np.array([25, 25]), np.array([0.0, 0.0]), np.array([0, 1]),
...                    np.array([0.9, 0.6]), np.array([0, -1]), None, ("SIT", "WALK"), "har@v1")
>>> fleet = FleetView(FleetConfig(timeline_points=3))
>>> fleet.observe(BatchReport(1, samples=50, predictions=rows, wall_time=1.0))
>>> fleet.snapshot()["by_activity"], fleet.snapshot()["accuracy"]["overall"]
({'SIT': 1, 'WALK': 1}, 1.0)
>>> fleet.device("b")["points"]["activity"], fleet.device("nobody")
(['WALK'], None)
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from pipeline.observability.report import (
    BatchReport,
    ChangeEvent,
    Detections,
    Predictions,
    SwapReport,
)

POINT = np.dtype(
    [("t_ms", "f8"), ("seq", "i8"), ("activity", "i4"), ("confidence", "f4"), ("label", "i4"),
     ("anomaly", "f4"), ("version", "i4")]
)  # fmt: skip
"""one emitted prediction: a device's current state, or a point of its timeline"""
DETECTION = np.dtype(
    [("t_ms", "f8"), ("seq_first", "i8"), ("seq_last", "i8"), ("score", "f4"), ("flagged", "?"),
     ("threshold", "f4"), ("version", "i4")]
)  # fmt: skip
"""one window the anomaly detector scored: a device's latest, or a point of its timeline"""
WANTED = 32
"""devices without a timeline the dashboard may ask for at once"""


@dataclass(frozen=True)
class FleetConfig:
    """What the fleet view keeps.

    ``timeline_points`` per device (predictions, and as many detector windows) for up to
    ``timeline_devices``: a device keeps its timeline until it falls silent, and one the
    dashboard asks for takes over the timeline viewed least recently; ``max_devices`` tracked at
    all, and devices silent for ``idle_s`` are forgotten; ``recent`` activity changes,
    anomalies, flagged windows and swaps; throughput over ``window_s`` seconds (and second by
    second for the last ``history_s``), latency percentiles over the last ``latency_records``
    records, anomalies and the count of flagged windows from the last ``anomaly_s`` seconds;
    ``list_devices`` in the snapshot's device list.
    """

    timeline_points: int = 240
    timeline_devices: int = 2000
    max_devices: int = 100_000
    idle_s: float = 300.0
    recent: int = 50
    window_s: float = 10.0
    history_s: int = 60
    latency_records: int = 20_000
    anomaly_s: float = 120.0
    list_devices: int = 100


class _Rows:
    """Rows of :data:`POINT` (each of ``shape``) for up to ``capacity`` devices.

    A new device takes a free row; when none is left, it may take the row viewed least
    recently (then seen least recently). Ticks count batches; -1 marks a free row, or one
    never viewed. ``rings`` (name: ``(size, dtype)``) are further :class:`_Ring` s beside
    ``data``, emptied when a row changes hands.
    """

    def __init__(
        self, capacity: int, shape: tuple[int, ...] = (), rings: dict | None = None
    ) -> None:
        self.capacity = capacity
        self.data = np.zeros((min(capacity, 256), *shape), POINT)
        self.rings = {name: _Ring(len(self.data), size, dtype)
                      for name, (size, dtype) in (rings or {}).items()}  # fmt: skip
        self.seen = np.full(len(self.data), -1, np.int64)
        self.viewed = np.full(len(self.data), -1, np.int64)
        self.seen_at = np.zeros(len(self.data))  # wall time
        self.written = np.zeros(len(self.data), np.int64)
        self.keys: list[str | None] = [None] * len(self.data)
        self.index: dict[str, int] = {}

    def rows(
        self, devices: list[str], tick: int, now: float, claims: Collection[str] | None = None
    ) -> np.ndarray:
        """The rows of ``devices`` (-1 for those left without one), taking rows for new ones;
        with ``claims``, only the devices named there may take a row in use."""
        rows = self.lookup(devices)
        if (rows < 0).any():
            new = list(dict.fromkeys(np.asarray(devices, dtype=object)[rows < 0].tolist()))
            evicting = len(new)
            if claims is not None:
                claiming = [d for d in new if d in claims]
                new, evicting = claiming + [d for d in new if d not in claims], len(claiming)
            taken = self._take(len(new), evicting)
            for device, row in zip(new, taken.tolist(), strict=False):  # not all may fit
                self.index[device] = row
                self.keys[row] = device
            self.written[taken] = 0
            for ring in self.rings.values():
                ring.written[taken] = 0
            self.viewed[taken] = -1
            rows = self.lookup(devices)
        self.seen[rows[rows >= 0]] = tick
        self.seen_at[rows[rows >= 0]] = now
        return rows

    def lookup(self, devices: list[str]) -> np.ndarray:
        """The rows of ``devices``, -1 for those without one."""
        return np.fromiter((self.index.get(d, -1) for d in devices), np.int64, len(devices))

    def _take(self, n: int, evicting: int) -> np.ndarray:
        """Up to ``n`` rows: the free ones, then rows in use for the first ``evicting``."""
        free = np.flatnonzero(self.seen < 0)
        if len(free) < n and len(self.data) < self.capacity:
            self._grow(min(self.capacity, max(2 * len(self.data), len(self.index) + n)))
            free = np.flatnonzero(self.seen < 0)
        if evicting > len(free):
            used = np.flatnonzero(self.seen >= 0)
            order = np.lexsort((self.seen[used], self.viewed[used]))
            victims = used[order[: evicting - len(free)]]
            self._free(victims)
            free = np.concatenate([free, victims])
        return free[:n]

    def _grow(self, size: int) -> None:
        extra = size - len(self.data)
        self.data = np.concatenate([self.data, np.zeros((extra, *self.data.shape[1:]), POINT)])
        self.seen = np.concatenate([self.seen, np.full(extra, -1, np.int64)])
        self.viewed = np.concatenate([self.viewed, np.full(extra, -1, np.int64)])
        self.seen_at = np.concatenate([self.seen_at, np.zeros(extra)])
        self.written = np.concatenate([self.written, np.zeros(extra, np.int64)])
        self.keys.extend([None] * extra)
        for ring in self.rings.values():
            ring.grow(extra)

    def forget(self, before: float) -> None:
        """Free the rows of devices not seen since the wall time ``before``."""
        self._free(np.flatnonzero((self.seen >= 0) & (self.seen_at < before)))

    def _free(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            del self.index[self.keys[row]]
            self.keys[row] = None
        self.seen[rows] = -1
        self.viewed[rows] = -1

    def used(self) -> np.ndarray:
        return self.seen >= 0

    def recent(self, n: int) -> np.ndarray:
        """The rows in use, most recently seen first (then latest event time), at most ``n``."""
        used = np.flatnonzero(self.used())
        order = np.lexsort((-self.data["t_ms"][used], -self.seen[used]))
        return used[order[:n]]

    def timeline(self, row: int) -> np.ndarray:
        """The points of ``row``'s ring, oldest first."""
        return _oldest_first(self.data, self.written, row)


class _Ring:
    """The last ``size`` points of each row (of ``dtype``)."""

    def __init__(self, rows: int, size: int, dtype: np.dtype) -> None:
        self.data = np.zeros((rows, size), dtype)
        self.written = np.zeros(rows, np.int64)
        """points appended to each row since it changed hands"""

    def grow(self, extra: int) -> None:
        self.data = np.concatenate([self.data, np.zeros((extra, self.data.shape[1]),
                                                        self.data.dtype)])  # fmt: skip
        self.written = np.concatenate([self.written, np.zeros(extra, np.int64)])

    def append(self, rows: np.ndarray, points: np.ndarray) -> None:
        _append(self.data, self.written, rows, points)

    def points(self, row: int) -> np.ndarray:
        """``row``'s points, oldest first."""
        return _oldest_first(self.data, self.written, row)


def _append(data: np.ndarray, written: np.ndarray, rows: np.ndarray, points: np.ndarray) -> None:
    """Append each point to its row's ring in ``data`` (a row may get several at once, and keeps
    the last of them if they are more than its ring holds); ``written`` counts each row's points."""
    size = data.shape[1]
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    rank = np.empty_like(rows)
    rank[order] = np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))
    new = np.bincount(rows, minlength=len(written))
    kept = rank >= new[rows] - size
    data[rows[kept], (written[rows[kept]] + rank[kept]) % size] = points[kept]
    written += new


def _oldest_first(data: np.ndarray, written: np.ndarray, row: int) -> np.ndarray:
    size = data.shape[1]
    n = min(int(written[row]), size)
    return data[row, (written[row] - n + np.arange(n)) % size]


class _Anomaly(NamedTuple):
    score: float
    at: float
    """wall time of its batch"""
    device: str
    seq: int
    t_ms: float
    activity: int


class _Flagged(NamedTuple):
    device: str
    seq_first: int
    seq_last: int
    t_ms: float
    score: float
    version: str


class FleetView:
    """Follows a worker batch by batch and answers the dashboard (thread-safe)."""

    def __init__(self, config: FleetConfig | None = None) -> None:
        self.config = cfg = config or FleetConfig()
        self._lock = threading.Lock()
        self._devices = _Rows(cfg.max_devices, rings={"detector": (1, DETECTION)})
        self._timelines = _Rows(cfg.timeline_devices, (cfg.timeline_points,),
                                rings={"detector": (cfg.timeline_points, DETECTION)})  # fmt: skip
        self.classes: list[str] = []
        self._class_index: dict[str, int] = {}
        self.versions: list[str] = []
        self._version_index: dict[str, int] = {}
        self._batches: deque[tuple[float, int, int]] = deque()  # (wall time, samples, records)
        self._seconds: deque[list[int]] = deque(maxlen=cfg.history_s + 1)  # [second, samples]
        self._latency = np.full(cfg.latency_records, np.nan)
        self._latency_written = 0
        self._changes: deque[ChangeEvent] = deque(maxlen=cfg.recent)
        self._swaps: deque[SwapReport] = deque(maxlen=cfg.recent)
        self._anomalies: list[_Anomaly] = []
        self.detector_versions: list[str] = []
        self._detector_index: dict[str, int] = {}
        self._detector: tuple[str, float] | None = None
        """the served detector's version and threshold, as of the latest detections"""
        self._detector_totals = Counter(scored=0, flagged=0)
        self._flagged_at: deque[tuple[float, int]] = deque()  # (wall time, windows flagged)
        self._flagged: deque[_Flagged] = deque(maxlen=cfg.recent)
        self._scored: Counter = Counter()
        self._hits: Counter = Counter()
        self._dead_letters: Counter = Counter()
        self._totals = Counter(dict.fromkeys(("batches", "messages", "records", "samples"), 0))
        self._last: BatchReport | None = None
        self._wanted: dict[str, None] = {}
        """devices the dashboard asked for that have no timeline yet (oldest first)"""
        self._next_forget = -np.inf

    # -- the hot path ---------------------------------------------------------------------

    def observe(self, report: BatchReport) -> None:
        """Fold one batch in (on the worker's thread)."""
        cfg, now = self.config, report.wall_time
        with self._lock:
            self._last = report
            self._totals.update(batches=1, messages=report.messages, records=report.records,
                                samples=report.samples)  # fmt: skip
            self._dead_letters.update(report.dead_letters)
            self._batches.append((now, report.samples, report.records))
            while self._batches and self._batches[0][0] < now - cfg.window_s:
                self._batches.popleft()
            if self._seconds and self._seconds[-1][0] == int(now):
                self._seconds[-1][1] += report.samples
            else:
                self._seconds.append([int(now), report.samples])
            self._note_latency(report.latency_ms)
            self._changes.extend(report.events)
            self._swaps.extend(report.swaps)
            if now >= self._next_forget:
                self._devices.forget(now - cfg.idle_s)
                self._timelines.forget(now - cfg.idle_s)
                self._next_forget = now + cfg.idle_s / 10
            if report.predictions is not None:
                self._note_predictions(report.predictions, now)
            if report.detections is not None:
                self._note_detections(report.detections, now)
            while self._flagged_at and self._flagged_at[0][0] < now - cfg.anomaly_s:
                self._flagged_at.popleft()

    def _note_latency(self, latency_ms: np.ndarray) -> None:
        values = latency_ms[np.isfinite(latency_ms)][-len(self._latency) :]
        at = (self._latency_written + np.arange(len(values))) % len(self._latency)
        self._latency[at] = values
        self._latency_written += len(values)

    def _note_predictions(self, p: Predictions, now: float) -> None:
        points = np.zeros(len(p.devices), POINT)
        classes = self._indices(self._class_index, self.classes, p.classes)
        points["t_ms"], points["seq"], points["confidence"] = p.t_ms, p.seqs, p.confidence
        points["activity"] = classes[p.activity]
        labelled = (p.label >= 0) & (p.label < len(classes))
        points["label"] = np.where(labelled, classes[np.where(labelled, p.label, 0)], -1)
        points["anomaly"] = np.nan if p.anomaly is None else p.anomaly
        points["version"] = self._indices(self._version_index, self.versions, (p.version,))[0]
        self._scored[p.version] += int(labelled.sum())
        self._hits[p.version] += int((labelled & (p.activity == p.label)).sum())

        tick = self._totals["batches"]
        rows = self._devices.rows(p.devices, tick, now)
        self._devices.data[rows[rows >= 0]] = points[rows >= 0]
        rows = self._timelines.rows(p.devices, tick, now, claims=self._wanted)
        for device in [d for d in self._wanted if d in self._timelines.index]:
            del self._wanted[device]
        kept = rows >= 0
        _append(self._timelines.data, self._timelines.written, rows[kept], points[kept])
        if p.anomaly is not None:
            self._note_anomalies(p, points, now)

    def _note_detections(self, d: Detections, now: float) -> None:
        """The scored windows of devices already followed: each one's latest, and its timeline's
        points if it has a timeline (a detector window alone takes no row)."""
        points = np.zeros(len(d.devices), DETECTION)
        points["t_ms"], points["seq_first"], points["seq_last"] = d.t_ms, d.seq_first, d.seq_last
        points["score"], points["flagged"], points["threshold"] = d.score, d.flagged, d.threshold
        index, names = self._detector_index, self.detector_versions
        points["version"] = self._indices(index, names, (d.version,))[0]
        for table in (self._devices, self._timelines):
            rows = table.lookup(d.devices)
            table.rings["detector"].append(rows[rows >= 0], points[rows >= 0])
        self._detector = (d.version, float(d.threshold))
        flagged = np.flatnonzero(points["flagged"])
        self._detector_totals.update(scored=len(points), flagged=len(flagged))
        if len(flagged):
            self._flagged_at.append((now, len(flagged)))
        self._flagged.extend(
            _Flagged(d.devices[i], int(d.seq_first[i]), int(d.seq_last[i]), float(d.t_ms[i]),
                     float(d.score[i]), d.version)
            for i in flagged[-self.config.recent :].tolist()
        )  # fmt: skip

    def _note_anomalies(self, p: Predictions, points: np.ndarray, now: float) -> None:
        k = self.config.recent
        score = np.where(np.isfinite(p.anomaly), p.anomaly, -np.inf)
        top = np.argsort(-score, kind="stable")[:k]
        fresh = [
            _Anomaly(float(score[i]), now, p.devices[i], int(p.seqs[i]), float(p.t_ms[i]),
                     int(points["activity"][i]))
            for i in top.tolist() if score[i] > -np.inf
        ]  # fmt: skip
        recent = [a for a in self._anomalies if a.at >= now - self.config.anomaly_s]
        self._anomalies = heapq.nlargest(k, recent + fresh, key=lambda a: a.score)

    @staticmethod
    def _indices(index: dict[str, int], names: list[str], new: tuple[str, ...]) -> np.ndarray:
        """Positions of ``new`` in the growing list ``names`` (appending the unknown ones)."""
        for name in new:
            if name not in index:
                index[name] = len(names)
                names.append(name)
        return np.array([index[name] for name in new], np.int64)

    # -- the dashboard's reads ----------------------------------------------------------------

    def snapshot(self) -> dict:
        """The fleet overview: JSON-ready plain values, no NaN.

        Once the worker serves an anomaly detector, ``detector`` sums up its windows: ``version``
        and ``threshold`` served, windows ``scored`` and ``flagged`` so far, ``flagged_in_window``
        over the last ``window_s`` seconds, the ``recent`` flagged ones (newest first: device,
        ``seq_first``, ``seq_last``, ``t_ms``, score, version); and each entry of ``device_list``
        with a scored window has its latest as ``detector`` (score, flagged, version).
        """
        cfg = self.config
        with self._lock:
            devices = self._devices
            used = devices.used()
            counts = np.bincount(devices.data["activity"][used], minlength=len(self.classes))
            latency = self._latency[np.isfinite(self._latency)]
            listed = devices.recent(cfg.list_devices)
            last = self._last
            return {
                "time": last.wall_time if last else None,
                **self._totals,
                "classes": list(self.classes),
                "devices": int(used.sum()),
                "worker_devices": last.devices if last else 0,
                "by_activity": dict(zip(self.classes, counts.tolist(), strict=True)),
                "throughput": self._throughput(),
                "latency_ms": {
                    "p50": _number(np.percentile(latency, 50)) if len(latency) else None,
                    "p99": _number(np.percentile(latency, 99)) if len(latency) else None,
                },
                "model": {
                    "version": self.versions[-1] if self.versions else None,
                    "versions": list(self.versions),
                    "swaps": [_swap(s) for s in reversed(self._swaps)],
                },
                "accuracy": self._accuracy(),
                "dead_letters": dict(self._dead_letters),
                "lag": sum(last.lag.values()) if last and last.lag is not None else None,
                "changes": [_change(e) for e in reversed(self._changes)],
                "anomalies": [
                    {
                        "device": a.device,
                        "score": round(a.score, 4),
                        "seq": a.seq,
                        "t_ms": a.t_ms,
                        "activity": self.classes[a.activity],
                    }
                    for a in self._anomalies
                ],
                "device_list": self._listed(listed),
                **({"detector": self._detector_summary()} if self._detector else {}),
            }

    def device(self, device: str) -> dict | None:
        """``device``'s current state and timeline (oldest point first), or None if unknown.

        If its timeline holds windows the anomaly detector scored, ``detector`` has them (oldest
        first: ``t_ms`` of each window's last sample, ``seq_first``, ``seq_last``, ``score``,
        ``flagged``) with the ``threshold`` and ``model`` of the latest.
        """
        with self._lock:
            row = self._devices.index.get(device)
            line = self._timelines.index.get(device)
            if row is None and line is None:
                return None
            if line is None:
                self._want(device)
                points = np.zeros(0, POINT)
            else:
                self._timelines.viewed[line] = self._totals["batches"]
                points = self._timelines.timeline(line)
            latest = points[-1:] if row is None else self._devices.data[[row]]
            current = self._describe([device], latest)
            windows = np.zeros(0, DETECTION)
            if line is not None:
                windows = self._timelines.rings["detector"].points(line)
            return {
                **current[0],
                "classes": list(self.classes),
                "points": {
                    "t_ms": points["t_ms"].tolist(),
                    "seq": points["seq"].tolist(),
                    **self._columns(points),
                },
                **({"detector": self._windows(windows)} if len(windows) else {}),
            }

    def _want(self, device: str) -> None:
        """Give ``device`` a timeline from its next prediction on."""
        self._wanted[device] = None
        while len(self._wanted) > WANTED:
            del self._wanted[next(iter(self._wanted))]

    def _throughput(self) -> dict:
        (start, *_), *later = self._batches or [(0.0,)]
        span = later[-1][0] - start if later else 0.0
        samples, records = sum(b[1] for b in later), sum(b[2] for b in later)
        history = np.zeros(self.config.history_s, np.int64)  # samples per second, oldest first
        if self._seconds:
            ago = self._seconds[-1][0] - np.array([s for s, _ in self._seconds])
            done = (ago >= 1) & (ago <= len(history))
            history[len(history) - ago[done]] = np.array([n for _, n in self._seconds])[done]
        return {
            "samples_per_s": round(samples / span, 1) if span > 0 else 0.0,
            "records_per_s": round(records / span, 1) if span > 0 else 0.0,
            "window_s": self.config.window_s,
            "history": history.tolist(),
        }

    def _accuracy(self) -> dict:
        scored, hits = sum(self._scored.values()), sum(self._hits.values())
        return {
            "overall": round(hits / scored, 4) if scored else None,
            "scored": scored,
            "by_version": {
                v: {"accuracy": round(self._hits[v] / n, 4), "scored": n}
                for v, n in self._scored.items()
                if n
            },
        }

    def _columns(self, points: np.ndarray) -> dict:
        """Names, rounded numbers and None (for unlabelled, no anomaly) per point field."""
        names = np.array([*self.classes, None], dtype=object)  # index -1: None
        anomaly = points["anomaly"].astype(np.float64).round(4)
        return {
            "activity": names[points["activity"]].tolist(),
            "confidence": points["confidence"].astype(np.float64).round(4).tolist(),
            "label": names[points["label"]].tolist(),
            "anomaly": np.where(np.isfinite(anomaly), anomaly, None).tolist(),
            "version": np.array(self.versions, dtype=object)[points["version"]].tolist(),
        }

    def _listed(self, rows: np.ndarray) -> list[dict]:
        """The device list: the devices at ``rows``, with their latest scored window if any."""
        devices = self._devices
        listed = self._describe([devices.keys[r] for r in rows.tolist()], devices.data[rows])
        ring = devices.rings["detector"]
        scored = ring.written[rows] > 0
        latest = ring.data[rows[scored], 0]
        names = np.array(self.detector_versions, dtype=object)[latest["version"]].tolist()
        entries = [entry for entry, has in zip(listed, scored.tolist(), strict=True) if has]
        for entry, score, flagged, version in zip(
            entries, _scores(latest["score"]), latest["flagged"].tolist(), names, strict=True
        ):
            entry["detector"] = {"score": score, "flagged": flagged, "version": version}
        return listed

    def _windows(self, windows: np.ndarray) -> dict:
        """A device's scored windows as columns, with the latest one's threshold and model."""
        return {
            "t_ms": windows["t_ms"].tolist(),
            "seq_first": windows["seq_first"].tolist(),
            "seq_last": windows["seq_last"].tolist(),
            "score": _scores(windows["score"]),
            "flagged": windows["flagged"].tolist(),
            "threshold": _scores(windows["threshold"][-1:])[0],
            "model": self.detector_versions[windows["version"][-1]],
        }

    def _detector_summary(self) -> dict:
        (version, threshold), cfg = self._detector, self.config
        return {
            "version": version,
            "threshold": _scores([threshold])[0],
            **self._detector_totals,
            "window_s": cfg.anomaly_s,
            "flagged_in_window": sum(n for _, n in self._flagged_at),
            "recent": [
                {**f._asdict(), "score": _scores([f.score])[0]} for f in reversed(self._flagged)
            ],
        }

    def _describe(self, names: list[str], points: np.ndarray) -> list[dict]:
        columns = self._columns(points)
        fields = ("device", "seq", "t_ms", *columns)
        rows = zip(names, points["seq"].tolist(), points["t_ms"].tolist(), *columns.values(),
                   strict=True)  # fmt: skip
        return [dict(zip(fields, row, strict=True)) for row in rows]


def _scores(values) -> list[float | None]:
    """Detector scores (or thresholds) rounded for JSON, None for a non-finite one."""
    rounded = np.asarray(values, np.float64).round(4)
    return np.where(np.isfinite(rounded), rounded, None).tolist()


def _number(value: float) -> float | None:
    return round(float(value), 2) if np.isfinite(value) else None


def _change(e: ChangeEvent) -> dict:
    return {"device": e.device, "from": e.previous, "to": e.to, "seq": e.seq, "t_ms": e.t_ms,
            "version": e.version}  # fmt: skip


def _swap(s: SwapReport) -> dict:
    return {"slot": s.slot, "version": s.version, "previous": s.previous, "batch": s.batch,
            "pause_ms": round(max(s.pauses_ms, default=0.0), 2)}  # fmt: skip
