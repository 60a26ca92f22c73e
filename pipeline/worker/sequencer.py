"""Per-device ordering: each sample is applied once, in sequence order, whatever is redelivered.

Records of one device may arrive duplicated, overlapping or out of order (a producer retry, a
reordering network, a rebalance that redelivers). The sequencer compares every record with the
device's last applied sequence number:

- wholly at or below it: a duplicate (or a late record whose place has passed): dropped, counted;
- overlapping it: only the samples after it are taken;
- right after it: taken;
- after a gap: *held* (policy ``late="hold"``) until the missing records arrive, or until it has
  waited ``hold_s`` seconds or ``hold_records`` later records of the device are waiting too; then
  it is applied across the gap (the gap is counted; a gap over ``max_gap`` resets the device).

A device the worker has no state for starts at sequence number 0 without waiting; a first
record after 0 is held like one after a gap, in case the ones before it are late. A device that
counts again from the start (restarted: a record at or below its last applied sequence number
that starts more than ``RESTART_MS``, a second, after its last applied sample) begins a new
stream: the worker resets it and the records from then on are applied as a new device's (what
came before from the old count is applied first).

Records that need none of this (a device's records in the batch, in order, each right after the
one before, the first right after its last applied one, nothing held) may come as one block
(:class:`Arrivals`) and become runs without a Python object per record on the way. Held records
keep their source offsets uncommitted (see :meth:`Sequencer.held_offsets`): nothing held is lost
in a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from streams.protocols import TopicPartition
from streams.record import RESTART_MS, UNLABELLED, Record, RecordBlock

LatePolicy = Literal["hold", "drop"]


@dataclass(frozen=True)
class SequencerConfig:
    """How long a record after a gap waits for the records before it."""

    late: LatePolicy = "hold"
    hold_s: float = 2.0
    hold_records: int = 16


@dataclass(frozen=True, slots=True)
class Pending:
    """A decoded record and where it came from."""

    record: Record
    tp: TopicPartition
    offset: int
    received: float
    """monotonic clock when polled (how long it has been held)"""
    timestamp_ms: float = float("nan")
    """the broker's timestamp of the message (for end-to-end latency)"""


@dataclass(frozen=True)
class Arrivals:
    """Records of a batch as one block, with where each came from: the topic, and per row the
    partition, the offset and the broker's timestamp (ms)."""

    block: RecordBlock
    topic: str
    partition: np.ndarray
    offset: np.ndarray
    timestamp_ms: np.ndarray
    received: float
    """monotonic clock when polled"""

    def pending(self, j: int) -> Pending:
        """Row ``j`` as a :class:`Pending` record."""
        tp = TopicPartition(self.topic, int(self.partition[j]))
        return Pending(self.block.record(j), tp, int(self.offset[j]), self.received,
                       float(self.timestamp_ms[j]))  # fmt: skip


class _Chains(NamedTuple):
    """Records of a block, one chain per device: ``rows[starts[k] : starts[k] + counts[k]]``
    are the rows of ``devices[k]``'s, in sequence order."""

    devices: list[str]
    rows: np.ndarray
    starts: np.ndarray
    counts: np.ndarray


_NO_CHAINS = _Chains([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass
class DeviceRun:
    """The new samples of one device to apply now, in order (``seqs`` strictly increasing)."""

    device: str
    seqs: np.ndarray
    values: np.ndarray
    labels: np.ndarray
    times_ms: np.ndarray
    gap_before: int = 0
    kafka_ts_ms: float = float("nan")
    """broker timestamp of the newest record that contributed (for latency)"""
    partition: int = -1
    offset: int = -1
    """source partition and offset of the last record that contributed (for checkpoints)"""
    rate_hz: float = 0.0
    """the device's sample rate (of the last record that contributed; 0: not known)"""
    restart: bool = False
    """the device counts again from the start: a new stream (reset the device first)"""


@dataclass
class SequencerStats:
    duplicates: int = 0
    duplicate_samples: int = 0
    gaps: int = 0
    missing_samples: int = 0
    held: int = 0
    restarts: int = 0


class Sequencer:
    """Turns batches of records into per-device runs of new samples."""

    def __init__(
        self, config: SequencerConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or SequencerConfig()
        self._clock = clock
        self._held: dict[str, list[Pending]] = {}
        self._ready: set[str] = set()  # devices with held records to look at again next call
        self.stats = SequencerStats()

    @property
    def held_records(self) -> int:
        return sum(len(v) for v in self._held.values())

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget the held records of ``partitions`` (revoked: their new owner reads them again
        from the committed offset); the number dropped."""
        gone = set(partitions)
        dropped = 0
        for device in list(self._held):
            kept = [p for p in self._held[device] if p.tp not in gone]
            dropped += len(self._held[device]) - len(kept)
            if kept:
                self._held[device] = kept
            else:
                del self._held[device]
                self._ready.discard(device)
        return dropped

    def held_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the smallest offset still held (commit no further than this)."""
        out: dict[TopicPartition, int] = {}
        for pending in self._held.values():
            for p in pending:
                out[p.tp] = min(out.get(p.tp, p.offset), p.offset)
        return out

    def sequence(
        self,
        batch: Iterable[Pending],
        last_applied: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
        flush: bool = False,
        arrivals: Arrivals | None = None,
    ) -> list[DeviceRun]:
        """The runs to apply for ``batch`` and ``arrivals`` (plus held records that are now
        due).

        ``last_applied(devices)`` gives each device's last applied sequence number (-1: none)
        and that sample's event time in ms (NaN: none). ``flush`` applies every held record now
        (end of input, shutdown).
        """
        by_device: dict[str, list[Pending]] = {}
        for p in batch:
            by_device.setdefault(p.record.device, []).append(p)
        chains = self._chains(arrivals, by_device) if arrivals is not None else _NO_CHAINS
        now = self._clock()
        for device, held in self._held.items():
            if device not in by_device and (flush or device in self._ready or self._due(held, now)):
                by_device[device] = []
        m = len(chains.devices)
        if not by_device and not m:
            return []
        devices = list(by_device)
        cursors, times = last_applied(chains.devices + devices)
        runs = []
        if arrivals is not None and m:
            runs = self._in_order(arrivals, chains, cursors[:m], times[:m], now, flush)
        rest = zip(devices, cursors[m:].tolist(), times[m:].tolist(), strict=True)
        for device, cursor, last_ms in rest:
            pending, held = by_device[device], self._held.pop(device, None)
            if held:
                pending = held + pending
                self._ready.discard(device)
            if len(pending) > 1:
                pending.sort(key=lambda p: p.record.seq)
            run = self._take(device, pending, int(cursor), last_ms, now, flush)
            if run is not None:
                runs.append(run)
        self.stats.held = self.held_records
        return runs

    def _chains(self, arrivals: Arrivals, by_device: dict[str, list[Pending]]) -> _Chains:
        """The rows of ``arrivals`` as one chain per device that needs no careful handling: its
        records in the batch, in the order they came, each starting right after the one before
        and no earlier in time; no other record of the device in ``by_device``, none held. The
        rows of the other devices join ``by_device``."""
        block = arrivals.block
        code: dict[str, int] = {}
        codes = np.fromiter((code.setdefault(d, len(code)) for d in block.devices), np.int64,
                            len(block))  # fmt: skip
        order = np.argsort(codes, kind="stable")  # device by device, each in arrival order
        grouped, seq, t0 = codes[order], block.seq[order], block.t0_ms[order]
        linked = (seq[1:] == seq[:-1] + block.n) & (t0[1:] >= t0[:-1])
        careful = np.zeros(len(code), bool)
        careful[grouped[1:][(grouped[1:] == grouped[:-1]) & ~linked]] = True
        for device in (by_device.keys() | self._held.keys()) & code.keys():
            careful[code[device]] = True
        chained = ~careful[grouped]
        for j in np.sort(order[~chained]).tolist():
            by_device.setdefault(block.devices[j], []).append(arrivals.pending(j))
        rows, grouped = order[chained], grouped[chained]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(rows) else rows
        return _Chains([block.devices[j] for j in rows[starts].tolist()], rows, starts,
                       np.diff(np.r_[starts, len(rows)]))  # fmt: skip

    def _in_order(
        self, arrivals: Arrivals, chains: _Chains, cursors: np.ndarray, times: np.ndarray,
        now: float, flush: bool,
    ) -> list[DeviceRun]:  # fmt: skip
        """The runs of ``chains`` (:meth:`_chains`): those that start right after their
        device's last applied sample at once, cut from arrays gathered for all; the others
        by :meth:`_take`."""
        block, runs = arrivals.block, []
        follows = block.seq[chains.rows[chains.starts]] == cursors + 1
        for k in np.flatnonzero(~follows).tolist():
            at = int(chains.starts[k])
            pending = [arrivals.pending(j) for j in chains.rows[at : at + chains.counts[k]]]
            run = self._take(chains.devices[k], pending, int(cursors[k]), float(times[k]), now,
                             flush)  # fmt: skip
            if run is not None:
                runs.append(run)
        if not follows.any():
            return runs
        rows = chains.rows[np.repeat(follows, chains.counts)]
        counts = chains.counts[follows]
        firsts = np.cumsum(counts) - counts
        lasts = rows[firsts + counts - 1]
        chosen, n = block.take(rows), block.n
        values = chosen.values.reshape(-1, chosen.values.shape[2])
        seqs, times_ms = chosen.sequences().reshape(-1), chosen.times_ms().reshape(-1)
        own = chosen.labels is not None
        labels = chosen.labels.reshape(-1) if own else unlabelled(int(counts.max()) * n)
        columns = (
            [chains.devices[k] for k in np.flatnonzero(follows).tolist()], (firsts * n).tolist(),
            (counts * n).tolist(), np.fmax.reduceat(arrivals.timestamp_ms[rows], firsts).tolist(),
            arrivals.partition[lasts].tolist(), np.maximum.reduceat(arrivals.offset[rows],
            firsts).tolist(), block.rate_hz[lasts].tolist(),
        )  # fmt: skip
        for device, a, size, ts, partition, offset, rate in zip(*columns, strict=True):
            b = a + size
            runs.append(DeviceRun(device, seqs[a:b], values[a:b],
                                  labels[a:b] if own else labels[:size], times_ms[a:b], 0, ts,
                                  partition, offset, rate))  # fmt: skip
        return runs

    def _due(self, held: list[Pending], now: float) -> bool:
        cfg = self.config
        return len(held) >= cfg.hold_records or now - held[0].received >= cfg.hold_s

    def _take(
        self, device: str, pending: list[Pending], cursor: int, last_ms: float, now: float,
        force: bool,
    ) -> DeviceRun | None:  # fmt: skip
        """One contiguous run for ``device``; a run never spans a gap or a restart (the device
        needs a reset there), so what follows waits for the next call. One record that follows
        the last applied sample (the usual case) becomes a run as it is."""
        if len(pending) == 1 and pending[0].record.seq == cursor + 1:  # the common case
            p, rec = pending[0], pending[0].record
            return DeviceRun(device, rec.sequence(), rec.values, labels_of(rec), rec.times_ms(), 0,
                             p.timestamp_ms, p.tp.partition, p.offset, rec.rate_hz)  # fmt: skip
        since = _restart(pending, cursor, last_ms)
        if since is None:
            return self._run(device, pending, cursor, now, force)
        old = [p for p in pending if p.record.t0_ms < since]  # the old count's last records
        new = [p for p in pending if p.record.t0_ms >= since]
        if any(p.record.last_seq > cursor for p in old):  # the old stream's end first
            run = self._run(device, old, cursor, now, force)
            self._held[device] = self._held.pop(device, []) + new
            if run is not None:
                self._ready.add(device)
            return run
        self._run(device, old, cursor, now, force)  # duplicates only: counted
        run = self._run(device, new, -1, now, force)
        if run is not None:
            run.restart = True
            self.stats.restarts += 1
        return run

    def _run(
        self, device: str, pending: list[Pending], cursor: int, now: float, force: bool
    ) -> DeviceRun | None:
        """The contiguous run of ``pending`` after ``cursor`` (records after a gap held)."""
        stats, cfg = self.stats, self.config
        pieces: list[tuple[np.ndarray, Record, np.ndarray]] = []
        gap_before = 0
        kafka_ts = float("nan")
        partition = offset = -1
        for i, p in enumerate(pending):
            rec = p.record
            seqs = rec.sequence()
            if cursor >= 0 and seqs[-1] <= cursor:
                stats.duplicates += 1
                stats.duplicate_samples += rec.n
                continue
            if seqs[0] > cursor + 1:  # a gap before this record (or a new device not at 0)
                waiting = pending[i:]
                if pieces:  # apply what is contiguous now, the rest right after
                    self._held[device] = waiting
                    self._ready.add(device)
                    break
                if cfg.late == "hold" and not force and not self._due(waiting, now):
                    self._held[device] = waiting
                    break
                if cursor >= 0:
                    gap_before = int(seqs[0] - cursor - 1)
                    stats.gaps += 1
                    stats.missing_samples += gap_before
            mask = seqs > cursor
            pieces.append((seqs[mask], rec, mask))
            cursor = int(seqs[-1])
            if math.isnan(kafka_ts) or p.timestamp_ms > kafka_ts:
                kafka_ts = p.timestamp_ms
            partition, offset = p.tp.partition, max(offset, p.offset)
        if not pieces:
            return None
        seqs = np.concatenate([s for s, _, _ in pieces])
        values = np.concatenate([r.values[m] for _, r, m in pieces])
        labels = np.concatenate([labels_of(r)[m] for _, r, m in pieces])
        times = np.concatenate([r.times_ms()[m] for _, r, m in pieces])
        return DeviceRun(device, seqs, values, labels, times, gap_before, kafka_ts, partition,
                         offset, pieces[-1][1].rate_hz)  # fmt: skip


def _restart(pending: list[Pending], cursor: int, last_ms: float) -> float | None:
    """The event time of the first record of a new count in ``pending`` (by sequence number),
    or None: a record is one when it counts again after the last applied sample (``cursor``,
    ``last_ms``: :meth:`Record.counts_again`) or starts more than :data:`RESTART_MS` after a
    record of a higher sequence number."""
    since, earliest_above = math.inf, math.inf
    for p in reversed(pending):
        t0 = p.record.t0_ms
        if p.record.counts_again(cursor, last_ms) or t0 > earliest_above + RESTART_MS:
            since = min(since, t0)
        earliest_above = min(earliest_above, t0)
    return None if since == math.inf else since


_UNLABELLED = np.full(4096, UNLABELLED, np.int16)
_UNLABELLED.flags.writeable = False


def unlabelled(n: int) -> np.ndarray:
    """``n`` read-only -1 label codes (int16), a slice of a shared block when it is long enough."""
    if n <= len(_UNLABELLED):
        return _UNLABELLED[:n]
    codes = np.full(n, UNLABELLED, np.int16)
    codes.flags.writeable = False
    return codes


def labels_of(record: Record) -> np.ndarray:
    """The record's label codes as int16 (:func:`unlabelled` when it has none)."""
    if record.labels is None:
        return unlabelled(record.n)
    return record.labels.astype(np.int16, copy=False)
