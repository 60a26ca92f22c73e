"""Replay recorded streams as a fleet of devices would send them, with optional faults.

Every device's stream is cut into records of ``samples_per_record`` consecutive samples (a gap
in a device's sequence numbers always starts a new record); all records are sent interleaved in
event-time order, as fast as possible or at ``speed`` x real time. Faults are drawn from a seeded
generator and counted, and the report says exactly which samples a correct consumer must end up
with: per device, the count and checksum of the valid samples sent at least once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from streams.accounting import DeviceTally
from streams.checksum import sample_checksum
from streams.codecs import CodecConfig, CodecName, make_codec
from streams.exceptions import ConfigError
from streams.protocols import Sink
from streams.record import Record
from streams.units import Units

if TYPE_CHECKING:
    from streams.datasets.base import StreamDataset


@dataclass(frozen=True)
class FaultConfig:
    """Per-record fault probabilities (0 = off) and the device clock skew bound."""

    drop: float = 0.0
    """never sent"""
    duplicate: float = 0.0
    """sent twice, the copy a few records later"""
    reorder: float = 0.0
    """sent after the same device's next record"""
    nan_burst: float = 0.0
    """a run of samples set to NaN: the record becomes invalid"""
    corrupt: float = 0.0
    """bytes mangled after encoding (cut short or garbage header): invalid"""
    clock_skew_ms: int = 0
    """each device's clock is off by a constant drawn from [-clock_skew_ms, +clock_skew_ms]"""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "nan_burst", "corrupt"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"fault probability {name} must be in [0, 1]")
        if self.clock_skew_ms < 0:
            raise ConfigError("clock_skew_ms must be >= 0")


@dataclass(frozen=True)
class ReplayConfig:
    """What to send where and how fast (``speed=None``: as fast as possible)."""

    topic: str = "sensor.raw"
    samples_per_record: int = 25
    speed: float | None = None
    codec: CodecName = "binary"
    with_labels: bool = True
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.samples_per_record < 1:
            raise ConfigError("samples_per_record must be >= 1")
        if self.speed is not None and self.speed <= 0:
            raise ConfigError("speed must be > 0 (or None for as fast as possible)")


@dataclass
class ReplayReport:
    """What was sent, which faults were injected, and what a correct consumer must see."""

    records_sent: int = 0
    samples_sent: int = 0
    bytes_sent: int = 0
    invalid_sent: int = 0
    """records sent that a decoder must reject (NaN bursts, corruption), copies included"""
    duration_s: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    expected: dict[str, DeviceTally] = field(default_factory=dict)

    @property
    def expected_samples(self) -> int:
        return sum(t.samples for t in self.expected.values())

    def summary(self) -> dict[str, object]:
        rate = self.samples_sent / self.duration_s if self.duration_s > 0 else float("nan")
        return {
            "devices": len(self.expected),
            "records_sent": self.records_sent,
            "samples_sent": self.samples_sent,
            "valid_unique_samples": self.expected_samples,
            "invalid_records_sent": self.invalid_sent,
            "megabytes_sent": round(self.bytes_sent / 1e6, 2),
            "duration_s": round(self.duration_s, 2),
            "samples_per_s": round(rate),
            **{f"fault_{k}": v for k, v in self.faults.items()},
        }


@dataclass(frozen=True)
class RecordPlan:
    """Every record to send: the stream it comes from, its sample range and its event time."""

    stream: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    t0_ms: np.ndarray

    def __len__(self) -> int:
        return int(self.stream.shape[0])


def plan_records(dataset: StreamDataset, samples_per_record: int) -> RecordPlan:
    """Cut every stream into records (gaps start a new one), in stream then sequence order."""
    streams, starts, stops, times = [], [], [], []
    for i, s in enumerate(dataset.streams):
        seq = s.sequence()
        if s.n == 0:
            continue
        run_starts = np.flatnonzero(np.diff(seq, prepend=seq[0] - 2) != 1)
        run_stops = np.append(run_starts[1:], s.n)
        lengths = run_stops - run_starts
        per_run = -(-lengths // samples_per_record)
        first = np.repeat(run_starts, per_run)
        within = np.arange(per_run.sum()) - np.repeat(np.cumsum(per_run) - per_run, per_run)
        start = first + within * samples_per_record
        stop = np.minimum(start + samples_per_record, np.repeat(run_stops, per_run))
        streams.append(np.full(start.shape, i, dtype=np.int32))
        starts.append(start)
        stops.append(stop)
        times.append(s.t0_ms + seq[start] * (1000.0 / s.rate_hz))
    if not streams:
        empty = np.zeros(0, dtype=np.int64)
        return RecordPlan(empty.astype(np.int32), empty, empty, empty.astype(np.float64))
    return RecordPlan(
        np.concatenate(streams),
        np.concatenate(starts),
        np.concatenate(stops),
        np.concatenate(times),
    )


def _send_order(
    plan: RecordPlan, faults: FaultConfig, rng: np.random.Generator, drop: np.ndarray, counts
) -> np.ndarray:
    """Record indices in event-time order, with reordering and duplicates applied."""
    order = np.argsort(plan.t0_ms, kind="stable")
    if faults.reorder > 0 and len(plan) > 1:
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        same_device_next = np.append(plan.stream[1:] == plan.stream[:-1], False)
        chosen = np.flatnonzero((rng.random(len(plan)) < faults.reorder) & same_device_next)
        for i in chosen:  # swap record i with its device's next record
            a, b = pos[i], pos[i + 1]
            order[a], order[b] = order[b], order[a]
            pos[i], pos[i + 1] = b, a
        counts["reordered"] = len(chosen)
    if faults.duplicate > 0:
        dup = (rng.random(len(order)) < faults.duplicate) & ~drop[order]
        counts["duplicated"] = int(dup.sum())
        delay = rng.integers(1, 8, size=len(order))
        key = np.concatenate((np.arange(len(order)), np.flatnonzero(dup) + delay[dup] + 0.5))
        order = np.concatenate((order, order[dup]))[np.argsort(key, kind="stable")]
    return order


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    if rng.random() < 0.5 and len(data) > 2:
        return data[: int(rng.integers(1, len(data)))]  # cut short
    garbage = rng.integers(0, 256, size=4, dtype=np.uint8).tobytes()
    return b"\x00" + garbage + data[5:]  # header overwritten


def replay(
    dataset: StreamDataset,
    sink: Sink,
    config: ReplayConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Send ``dataset`` through ``sink`` and report what a consumer must receive.

    Records say the dataset's units when they are not g and rad/s (the units every reader
    converts to). ``on_progress(records_done, records_total)`` is called now and then.
    """
    cfg = config or ReplayConfig()
    faults = cfg.faults
    rng = np.random.default_rng(faults.seed)
    codec = make_codec(
        cfg.codec, CodecConfig(channels=len(dataset.channels), max_samples=cfg.samples_per_record)
    )
    plan = plan_records(dataset, cfg.samples_per_record)
    counts: dict[str, int] = {}
    drop = rng.random(len(plan)) < faults.drop
    nan = ~drop & (rng.random(len(plan)) < faults.nan_burst)
    corrupt = ~drop & ~nan & (rng.random(len(plan)) < faults.corrupt)
    counts.update(dropped=int(drop.sum()), nan_bursts=int(nan.sum()), corrupted=int(corrupt.sum()))
    skew = np.zeros(len(dataset.streams), dtype=np.int64)
    if faults.clock_skew_ms > 0:
        skew = rng.integers(-faults.clock_skew_ms, faults.clock_skew_ms + 1, len(skew))
        counts["skewed_devices"] = int(np.count_nonzero(skew))
    order = _send_order(plan, faults, rng, drop, counts)

    report = ReplayReport(faults=counts)
    keys = [s.device.encode("utf-8") for s in dataset.streams]
    units = 0 if dataset.units == Units() else dataset.units.code()  # declared unless g, rad/s
    seqs = [s.sequence() for s in dataset.streams]
    started = time.perf_counter()
    first_t = float(plan.t0_ms[order[0]]) if len(order) else 0.0
    every = max(1, len(order) // 200)
    for done, i in enumerate(order):
        if drop[i]:
            continue
        s = dataset.streams[plan.stream[i]]
        a, b = int(plan.start[i]), int(plan.stop[i])
        if cfg.speed is not None:
            due = (plan.t0_ms[i] - first_t) / 1000.0 / cfg.speed
            ahead = due - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        values = s.values[a:b]
        if nan[i]:
            values = values.copy()
            burst = int(rng.integers(1, b - a + 1))
            values[int(rng.integers(0, b - a - burst + 1)) :][:burst] = np.nan
        record = Record(
            device=s.device,
            seq=int(seqs[plan.stream[i]][a]),
            t0_ms=int(round(plan.t0_ms[i])) + int(skew[plan.stream[i]]),
            rate_hz=float(s.rate_hz),
            values=values,
            labels=s.labels[a:b] if cfg.with_labels else None,
            units=units,
        )
        data = codec.encode(record)
        if corrupt[i]:
            data = _corrupt(data, rng)
        sink.send(cfg.topic, keys[plan.stream[i]], data)
        report.records_sent += 1
        report.invalid_sent += bool(nan[i] or corrupt[i])
        report.samples_sent += b - a
        report.bytes_sent += len(data)
        if on_progress is not None and done % every == 0:
            on_progress(done, len(order))
    sink.flush()
    report.duration_s = time.perf_counter() - started
    if on_progress is not None:
        on_progress(len(order), len(order))
    report.expected = _expected(dataset, plan, drop | nan | corrupt)
    return report


def _expected(dataset: StreamDataset, plan: RecordPlan, lost: np.ndarray) -> dict[str, DeviceTally]:
    """Per device: the valid samples that were sent at least once, and their checksum."""
    # the plan covers every sample of every stream once, in stream then sequence order
    keep = np.repeat(~lost, plan.stop - plan.start)
    bounds = np.cumsum([0] + [s.n for s in dataset.streams])
    out: dict[str, DeviceTally] = {}
    for i, s in enumerate(dataset.streams):
        k = keep[bounds[i] : bounds[i + 1]]
        out[s.device] = DeviceTally(int(k.sum()), sample_checksum(s.sequence()[k], s.values[k]))
    return out
