"""Labelled sensor records -> fixed-size training windows for the trainer.

Labels reach the trainer two ways: inside the records (``Record.labels``, from annotated devices
or replayed datasets) and later, as time ranges on the ``sensor.labels`` topic (someone tagging
"walking from 10:02 to 10:05"). :class:`LabelJoiner` keeps a tape of each device's recent
samples, labels them from both sources, and cuts a window once all its samples are labelled or
once waiting longer (in event time) is pointless. Redelivered samples are dropped by sequence
number, as the workers do, so Kafka's at-least-once delivery does not duplicate training data;
a device that counts from the start again (restarted) begins a new tape, as in the workers.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.exceptions import ConfigError, PipelineError
from streams.record import UNLABELLED, Record


class LabelError(PipelineError):
    """A message on the labels topic, or a record, that the joiner cannot use."""


@dataclass(frozen=True, slots=True)
class LabelRange:
    """Activity ``label`` for ``device``'s samples whose event time is in ``[start_ms, end_ms)``."""

    device: str
    start_ms: float
    end_ms: float
    label: int


def parse_label_message(key: bytes | None, value: bytes, classes: Sequence[str]) -> LabelRange:
    """The label range in a ``sensor.labels`` message.

    ``value`` is JSON ``{"device": ..., "start_ms": ..., "end_ms": ..., "activity": ...}``;
    ``device`` may be left out when the message key names it. ``activity`` is a name from
    ``classes`` (matched exactly, else ignoring case) or a class code. Anything else raises
    :class:`LabelError` saying why.

    >>> parse_label_message(b"d1", b'{"start_ms": 0, "end_ms": 500, "activity": "walking"}',
    ...                     ["sitting", "walking"])
    LabelRange(device='d1', start_ms=0.0, end_ms=500.0, label=1)
    """
    try:
        msg = json.loads(value)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise LabelError(f"invalid JSON: {e}") from e
    if not isinstance(msg, dict):
        raise LabelError(f"expected a JSON object, not {type(msg).__name__}")
    missing = [f for f in ("start_ms", "end_ms", "activity") if f not in msg]
    if missing:
        raise LabelError(f"missing {', '.join(missing)}")
    try:
        keyed = None if key is None else key.decode()
    except UnicodeDecodeError as e:
        raise LabelError(f"the message key is not UTF-8: {key!r}") from e
    device = msg.get("device", keyed)
    if device is None:
        raise LabelError("no device: neither a device field nor a message key")
    if not isinstance(device, str) or not device:
        raise LabelError(f"device must be a non-empty string, not {device!r}")
    if keyed is not None and device != keyed:
        raise LabelError(f"device {device!r} does not match the message key {keyed!r}")
    start, end = _time(msg, "start_ms"), _time(msg, "end_ms")
    if end <= start:
        raise LabelError(f"end_ms {end} is not after start_ms {start}")
    return LabelRange(device, start, end, _class_code(msg["activity"], classes))


def _time(msg: dict, field: str) -> float:
    value = msg[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError(f"{field} must be a number, not {value!r}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise LabelError(f"{field} must be finite, not {value}")
    return value


def _class_code(activity: object, classes: Sequence[str]) -> int:
    if isinstance(activity, str):
        if activity in classes:
            return list(classes).index(activity)
        folded = [c.casefold() for c in classes]
        if activity.casefold() in folded:
            return folded.index(activity.casefold())
        raise LabelError(f"unknown activity {activity!r} (known: {', '.join(classes)})")
    if isinstance(activity, int) and not isinstance(activity, bool):
        if 0 <= activity < len(classes):
            return activity
        raise LabelError(f"activity code {activity} is not in 0..{len(classes) - 1}")
    raise LabelError(f"activity must be a class name or code, not {activity!r}")


@dataclass(frozen=True)
class JoinConfig:
    """How records become windows.

    ``window`` samples per window, a new one every ``stride`` samples. A window not fully
    labelled waits until the device's newest sample is ``max_wait_ms`` (event time) past the
    window's last one, then is kept if at least ``min_labelled`` of its samples are labelled.
    A sequence jump over ``max_gap`` samples starts a new tape (no window spans it); smaller
    gaps are bridged. ``max_pending`` samples are kept per device at most, and the last
    ``max_ranges`` label ranges of a device also label its samples that arrive later.
    """

    window: int = 256
    stride: int = 256
    max_wait_ms: float = 10_000.0
    min_labelled: float = 0.5
    max_gap: int = 50
    max_pending: int = 4096
    max_ranges: int = 64

    def __post_init__(self) -> None:
        if min(self.window, self.stride, self.max_ranges) < 1 or self.max_gap < 0:
            raise ConfigError(f"window, stride, max_ranges must be >= 1 and max_gap >= 0: {self}")
        if self.max_pending < self.window:
            raise ConfigError(f"max_pending {self.max_pending} is less than a window")
        if not 0.0 <= self.min_labelled <= 1.0:
            raise ConfigError(f"min_labelled must be in [0, 1], not {self.min_labelled}")


@dataclass
class JoinStats:
    """Counters of a :class:`LabelJoiner` (for metrics)."""

    records: int = 0
    samples: int = 0
    """new samples taken onto the tapes"""
    duplicates: int = 0
    """samples at or below their device's last sequence number, dropped"""
    gaps: int = 0
    """tape restarts after a sequence jump over ``max_gap``"""
    restarts: int = 0
    """tape restarts where a device counted from the start again (:meth:`Record.counts_again`)"""
    windows: int = 0
    dropped_windows: int = 0
    """windows given up with fewer than ``min_labelled`` labelled samples"""
    label_ranges: int = 0
    overflow: int = 0
    """samples dropped to keep a tape within ``max_pending``"""


_FIELDS = ("times", "values", "labels", "inline", "restart")


class _Tape:
    """One device's samples not yet cut into windows, in arrays grown as needed (``lo:hi``).

    ``start`` is the next window's first sample, counted from ``lo``; past the end it counts
    samples still to skip (``stride > window``). ``restart`` marks a sample that begins a new
    tape after a sequence jump; ``inline`` marks labels that came with the record.
    """

    def __init__(self, channels: int, max_ranges: int) -> None:
        self.times = np.empty(0, np.float64)
        self.values = np.empty((0, channels), np.float32)
        self.labels = np.empty(0, np.int16)
        self.inline = np.empty(0, bool)
        self.restart = np.empty(0, bool)
        self.lo = self.hi = self.start = 0
        self.last_seq = -1
        self.newest_ms = -math.inf
        self.ranges: deque[LabelRange] = deque(maxlen=max_ranges)

    @property
    def size(self) -> int:
        return self.hi - self.lo

    def drop(self, count: int) -> None:
        """Forget the ``count`` oldest samples; the window start moves with them."""
        self.lo += count
        self.start = max(self.start - count, 0)

    def append(self, new: dict[str, np.ndarray], max_pending: int) -> int:
        """Add ``new`` samples (arrays named as :data:`_FIELDS`); how many old ones were
        dropped to stay within ``max_pending``."""
        n = len(new["times"])
        restarts = np.flatnonzero(new["restart"])
        if len(restarts) and self.size + restarts[0] < self.start:
            self.start = self.size + int(restarts[0])  # stop skipping: a new tape begins there
        over = max(self.size + n - max_pending, 0)
        cut = max(over - self.size, 0)  # more new samples than fit: the oldest of them go too
        self.drop(over - cut)
        if cut:
            new = {f: a[cut:] for f, a in new.items()}
            n -= cut
            self.start = max(self.start - cut, 0)
        if self.hi + n > len(self.times):
            self._move(max(self.size + n, min(max(2 * (self.size + n), 64), 2 * max_pending)))
        for f in _FIELDS:
            getattr(self, f)[self.hi : self.hi + n] = new[f]
        self.hi += n
        return over

    def _move(self, capacity: int) -> None:
        """Copy the samples in use to the front of arrays of ``capacity`` samples."""
        for f in _FIELDS:
            old = getattr(self, f)
            arr = np.empty((capacity, *old.shape[1:]), old.dtype)
            arr[: self.size] = old[self.lo : self.hi]
            setattr(self, f, arr)
        self.lo, self.hi = 0, self.size


class LabelJoiner:
    """Per-device tapes of samples, labelled from the records and from label ranges, cut into
    training windows.

    Inline labels (>= 0) are never overridden; a label range labels the other samples in its
    time range, a newer range overriding an older one.

    >>> joiner = LabelJoiner(channels=1, config=JoinConfig(window=2, stride=2))
    >>> labels = np.array([1, 1, 2, -1, -1], np.int16)
    >>> joiner.add_record(Record("d", 0, 0, 50.0, np.arange(5.0)[:, None], labels))
    >>> devices, values, labels = joiner.ready()  # the second window waits for labels
    >>> devices, values[..., 0].tolist(), labels.tolist()
    (['d'], [[0.0, 1.0]], [[1, 1]])
    >>> joiner.add_labels(LabelRange("d", 60.0, 100.0, 3))  # samples at 60 and 80 ms
    >>> devices, values, labels = joiner.ready()
    >>> devices, values[..., 0].tolist(), labels.tolist()
    (['d'], [[2.0, 3.0]], [[2, 3]])
    """

    def __init__(self, channels: int, config: JoinConfig | None = None) -> None:
        self.config = config or JoinConfig()
        self.channels = channels
        self.stats = JoinStats()
        self._tapes: dict[str, _Tape] = {}
        self._changed: dict[str, None] = {}  # devices to look at in ready(), in order

    def _tape(self, device: str) -> _Tape:
        tape = self._tapes.get(device)
        if tape is None:
            tape = self._tapes[device] = _Tape(self.channels, self.config.max_ranges)
        return tape

    @property
    def pending_samples(self) -> int:
        """Samples held on all tapes."""
        return sum(t.size for t in self._tapes.values())

    def add_record(self, record: Record) -> None:
        """Take the record's new samples onto its device's tape."""
        if record.channels != self.channels:
            raise LabelError(f"{record.device}: {record.channels} channels, not {self.channels}")
        cfg, stats = self.config, self.stats
        stats.records += 1
        tape = self._tape(record.device)
        counts_again = record.counts_again(tape.last_seq, tape.newest_ms)
        if counts_again:  # the device restarted: a new count, not redelivered samples
            stats.restarts += 1
            tape.last_seq = -1
        seqs = record.sequence()
        fresh = seqs > tape.last_seq
        stats.duplicates += int(record.n - fresh.sum())
        if not fresh.any():
            return
        seqs, times = seqs[fresh], record.times_ms()[fresh]
        if record.labels is None:
            labels = np.full(len(seqs), UNLABELLED, np.int16)
        else:
            labels = record.labels[fresh].astype(np.int16)
        restart = np.diff(seqs, prepend=tape.last_seq) > cfg.max_gap + 1
        restart[0] &= tape.last_seq >= 0  # a device's first sample continues nothing
        restart[0] |= counts_again
        stats.gaps += int(restart.sum())
        inline = labels >= 0
        _apply_ranges(tape.ranges, times, labels, inline)
        tape.last_seq = int(seqs[-1])
        tape.newest_ms = max(tape.newest_ms, float(times.max()))
        new = {"times": times, "values": record.values[fresh], "labels": labels,
               "inline": inline, "restart": restart}  # fmt: skip
        stats.overflow += tape.append(new, cfg.max_pending)
        stats.samples += len(seqs)
        self._changed[record.device] = None

    def add_labels(self, labels: LabelRange) -> None:
        """Label the device's samples in the range, now and as they arrive."""
        self.stats.label_ranges += 1
        tape = self._tape(labels.device)
        tape.ranges.append(labels)
        lo, hi = tape.lo, tape.hi
        if _apply_ranges([labels], tape.times[lo:hi], tape.labels[lo:hi], tape.inline[lo:hi]):
            self._changed[labels.device] = None

    def ready(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Pop every window that is ready: ``(devices, values (N, window, C) float32,
        labels (N, window) int16)``, each device's windows in order."""
        devices: list[str] = []
        values: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for device in self._changed:
            tape = self._tapes[device]
            for a in self._cut(tape):
                devices.append(device)
                values.append(tape.values[a : a + self.config.window])
                labels.append(tape.labels[a : a + self.config.window])
            tape.drop(min(tape.start, tape.size))  # samples before the next window
        self._changed.clear()
        w, c = self.config.window, self.channels
        if not devices:
            return [], np.empty((0, w, c), np.float32), np.empty((0, w), np.int16)
        return devices, np.stack(values), np.stack(labels)

    def _cut(self, tape: _Tape) -> list[int]:
        """Array positions of the tape's windows that are ready, moving its window start."""
        cfg, stats = self.config, self.stats
        out = []
        while tape.start + cfg.window <= tape.size:
            a = tape.lo + tape.start
            b = a + cfg.window
            restarts = tape.restart[a + 1 : b]
            if restarts.any():  # the window would span a restart: begin at it instead
                tape.start += 1 + int(restarts.argmax())
                continue
            labelled = tape.labels[a:b] >= 0
            if not labelled.all():
                if tape.newest_ms - tape.times[b - 1] <= cfg.max_wait_ms:
                    break
                if labelled.mean() < cfg.min_labelled:
                    stats.dropped_windows += 1
                    tape.start += cfg.stride
                    continue
            out.append(a)
            stats.windows += 1
            tape.start += cfg.stride
        return out


def _apply_ranges(
    ranges: Sequence[LabelRange], times: np.ndarray, labels: np.ndarray, inline: np.ndarray
) -> bool:
    """Set ``labels`` (in place) of the samples not labelled inline from the last of ``ranges``
    containing their time; whether any was set."""
    if not ranges or not len(times):
        return False
    start = np.array([r.start_ms for r in ranges])
    end = np.array([r.end_ms for r in ranges])
    inside = (times[:, None] >= start) & (times[:, None] < end) & ~inline[:, None]
    hit = inside.any(axis=1)
    last = len(ranges) - 1 - inside[:, ::-1].argmax(axis=1)
    labels[hit] = np.array([r.label for r in ranges], np.int16)[last[hit]]
    return bool(hit.any())
