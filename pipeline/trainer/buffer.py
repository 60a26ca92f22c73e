"""The trainer's bounded, class- and device-balanced buffer of labelled windows.

The trainer keeps the last ``capacity`` labelled windows it consumed and retrains from them.
A plain ring buffer would let one chatty device or one common activity push out everything
else, so when the buffer is full a new window replaces the oldest window of the device with the
most windows in the class with the most windows. Devices are split by a stable hash of their id
into a training part and a held-out part that gates candidate models, so a device never
contributes to both. Windows live in preallocated NumPy arrays, grown by doubling up to
``capacity``; :meth:`TrainingBuffer.save` writes them atomically (no pickle) so a restarted
trainer resumes with the same buffer.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.exceptions import ConfigError, PipelineError

_KEYS = ("values", "labels", "device", "device_names", "arrival", "added", "evicted")


class TrainingBufferError(PipelineError):
    """A training buffer file that cannot be read or does not fit the buffer loading it."""


@dataclass(frozen=True)
class BufferConfig:
    """Size of the buffer and share of devices held out for the gate.

    ``capacity``: windows kept at most. ``window``: samples per window. ``holdout_percent``:
    share of devices (by :func:`is_holdout`) whose windows are held out of training.
    """

    capacity: int = 20_000
    window: int = 256
    holdout_percent: float = 20.0

    def __post_init__(self) -> None:
        if min(self.capacity, self.window) < 1:
            raise ConfigError(f"capacity {self.capacity} and window {self.window} must be >= 1")
        if not 0.0 <= self.holdout_percent <= 100.0:
            raise ConfigError(f"holdout_percent must be in [0, 100], not {self.holdout_percent}")


def is_holdout(device: str, percent: float) -> bool:
    """Whether ``device`` belongs to the held-out ``percent`` of devices.

    A CRC-32 of the id, so every process and every restart splits the devices the same way.

    >>> is_holdout("dev-1", 100.0), is_holdout("dev-1", 0.0)
    (True, False)
    """
    return zlib.crc32(device.encode()) % 100 < percent


@dataclass(frozen=True, eq=False)
class Windows:
    """A copy of (part of) the buffer, oldest window first.

    ``values``: ``(n, window, C)`` float32; ``labels``: ``(n, window)`` int16, -1 where a sample
    is unlabelled; ``devices[i]`` sent window ``i``.
    """

    devices: tuple[str, ...]
    values: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.devices)


def _majority(labels: np.ndarray) -> np.ndarray:
    """Per row of ``labels`` (each with a label >= 0), its most frequent label >= 0 (ties go to
    the smaller code)."""
    n, width = labels.shape
    if n == 0:
        return np.empty(0, np.int16)
    classes = int(labels.max()) + 1
    flat = labels.ravel().astype(np.int64)
    rows = np.repeat(np.arange(n), width)
    ok = flat >= 0
    counts = np.bincount(rows[ok] * classes + flat[ok], minlength=n * classes)
    return counts.reshape(n, classes).argmax(axis=1).astype(np.int16)


class TrainingBuffer:
    """Up to ``capacity`` labelled windows, balanced across classes and devices when full.

    >>> buf = TrainingBuffer(channels=1, config=BufferConfig(capacity=2, window=3))
    >>> labels = np.array([[0, 0, -1], [1, 1, 1], [0, 0, 0], [-1, -1, -1]], np.int16)
    >>> buf.add(["a", "a", "b", "b"], np.zeros((4, 3, 1), np.float32), labels)
    3
    >>> len(buf), buf.class_counts(2).tolist(), buf.evicted
    (2, [1, 1], 1)
    """

    def __init__(self, channels: int, config: BufferConfig | None = None) -> None:
        self.config = config or BufferConfig()
        self.channels = channels
        self._n = 0
        self._added = 0
        self._evicted = 0
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._allocated = 0
        self._resize(0)

    # -- storage ----------------------------------------------------------------------------

    def _resize(self, size: int) -> None:
        """Hold ``size`` windows, keeping the filled ones."""
        n, w, c = self._n, self.config.window, self.channels

        def resized(arr: np.ndarray | None, shape: tuple[int, ...], dtype, fill) -> np.ndarray:
            new = np.full((size, *shape), fill, dtype)
            if arr is not None:
                new[:n] = arr[:n]
            return new

        first = self._allocated == 0  # nothing to keep (and no arrays yet)
        self._values = resized(None if first else self._values, (w, c), np.float32, 0.0)
        self._labels = resized(None if first else self._labels, (w,), np.int16, -1)
        self._major = resized(None if first else self._major, (), np.int16, 0)
        self._dev = resized(None if first else self._dev, (), np.int32, 0)
        self._arrival = resized(None if first else self._arrival, (), np.int64, 0)
        self._allocated = size

    def _reserve(self, size: int) -> None:
        if size > self._allocated:
            self._resize(min(self.config.capacity, max(size, 2 * self._allocated, 64)))

    def _device_index(self, devices: Sequence[str]) -> np.ndarray:
        if len(self._names) > 2 * self.config.capacity:  # forget devices no window belongs to
            names, self._dev[: self._n] = self._used_devices()
            self._names = names.tolist()
            self._index = {d: i for i, d in enumerate(self._names)}
        out = np.empty(len(devices), np.int32)
        for i, device in enumerate(devices):
            idx = self._index.get(device)
            if idx is None:
                idx = self._index[device] = len(self._names)
                self._names.append(device)
            out[i] = idx
        return out

    def _used_devices(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the devices held and each window's index into them."""
        used, inverse = np.unique(self._dev[: self._n], return_inverse=True)
        names = np.array([self._names[i] for i in used.tolist()], dtype=str)
        return names, inverse.astype(np.int32)

    def _victim(self) -> int:
        """The slot to evict: the oldest window of the device with the most windows in the class
        with the most windows (ties: the smaller class code, the device seen first)."""
        major = self._major[: self._n]
        in_class = np.flatnonzero(major == np.bincount(major).argmax())
        devs = self._dev[in_class]
        mine = in_class[devs == np.bincount(devs).argmax()]
        return int(mine[self._arrival[mine].argmin()])

    def _put(self, slot, dev, values, labels, major, arrival) -> None:
        self._values[slot] = values
        self._labels[slot] = labels
        self._major[slot] = major
        self._dev[slot] = dev
        self._arrival[slot] = arrival

    # -- public -----------------------------------------------------------------------------

    def add(self, devices: Sequence[str], values: np.ndarray, labels: np.ndarray) -> int:
        """Add windows ``values`` ``(N, window, C)`` with ``labels`` ``(N, window)`` sent by
        ``devices``; windows without a labelled sample are skipped. How many were kept."""
        w, c = self.config.window, self.channels
        values = np.asarray(values, np.float32)
        labels = np.asarray(labels, np.int16)
        n = len(devices)
        if values.shape != (n, w, c) or labels.shape != (n, w):
            raise TrainingBufferError(
                f"{n} devices need values ({n}, {w}, {c}) and labels ({n}, {w}), "
                f"not {values.shape} and {labels.shape}"
            )
        keep = np.flatnonzero((labels >= 0).any(axis=1))
        values, labels = values[keep], labels[keep]
        major = _majority(labels)
        dev = self._device_index([devices[i] for i in keep.tolist()])
        fill = min(len(keep), self.config.capacity - self._n)
        self._reserve(self._n + fill)
        arrival = np.arange(self._added, self._added + len(keep))
        self._put(slice(self._n, self._n + fill), dev[:fill], values[:fill], labels[:fill],
                  major[:fill], arrival[:fill])  # fmt: skip
        self._n += fill
        for i in range(fill, len(keep)):
            self._put(self._victim(), dev[i], values[i], labels[i], major[i], arrival[i])
            self._evicted += 1
        self._added += len(keep)
        return len(keep)

    def __len__(self) -> int:
        return self._n

    @property
    def added(self) -> int:
        """Windows accepted since the buffer was created (including those evicted since)."""
        return self._added

    @property
    def evicted(self) -> int:
        """Windows that made room for newer ones."""
        return self._evicted

    def class_counts(self, classes: int) -> np.ndarray:
        """Windows per majority class ``0 .. classes - 1``."""
        return np.bincount(self._major[: self._n], minlength=classes)[:classes]

    def devices(self) -> int:
        """Number of distinct devices with windows in the buffer."""
        return len(np.unique(self._dev[: self._n]))

    def _held_out(self) -> np.ndarray:
        """Per slot in use, whether its device is held out."""
        pct = self.config.holdout_percent
        held = np.array([is_holdout(d, pct) for d in self._names], dtype=bool)
        return held[self._dev[: self._n]]

    def count(self, holdout: bool) -> int:
        """Windows in the held-out part (``holdout=True``) or in the training part."""
        return int(np.count_nonzero(self._held_out() == holdout))

    def windows(self, holdout: bool) -> Windows:
        """A copy of the held-out part (``holdout=True``) or of the training part."""
        slots = np.flatnonzero(self._held_out() == holdout)
        slots = slots[np.argsort(self._arrival[slots], kind="stable")]
        names = self._names
        return Windows(
            tuple(names[i] for i in self._dev[slots].tolist()),
            self._values[slots],
            self._labels[slots],
        )

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the buffer to ``path`` (``.npz``, no pickle), atomically: a temporary file in
        the same directory, flushed to disk, then renamed over ``path``."""
        path = Path(path)
        n = self._n
        names, dev = self._used_devices()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    values=self._values[:n],
                    labels=self._labels[:n],
                    device=dev,
                    device_names=names,
                    arrival=self._arrival[:n],
                    added=np.int64(self._added),
                    evicted=np.int64(self._evicted),
                )
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(
        cls, path: str | os.PathLike, channels: int, config: BufferConfig | None = None
    ) -> TrainingBuffer:
        """The buffer :meth:`save` wrote to ``path``.

        A missing file raises :class:`FileNotFoundError` (the caller decides whether to start
        empty); a file that is not a buffer, or whose windows do not fit ``channels`` and
        ``config.window``, raises :class:`TrainingBufferError`. A file holding more windows than
        ``config.capacity`` is cut down by the usual eviction rule.
        """
        buf = cls(channels, config)
        w = buf.config.window
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with data:
                missing = [k for k in _KEYS if k not in data.files]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                arr = {k: data[k] for k in _KEYS}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise TrainingBufferError(f"{path}: not a readable training buffer: {e}") from e

        values = arr["values"]
        if values.ndim != 3 or values.shape[1:] != (w, channels):
            raise TrainingBufferError(
                f"{path}: holds windows of shape {values.shape[1:]} (samples, channels), "
                f"this buffer takes ({w}, {channels})"
            )
        problem = _corruption(arr, w)
        if problem:
            raise TrainingBufferError(f"{path}: corrupt training buffer: {problem}")

        order = np.argsort(arr["arrival"], kind="stable")  # oldest first, as they were added
        values, labels = values[order], arr["labels"][order].astype(np.int16)
        dev, arrival = arr["device"][order], arr["arrival"][order]
        major = _majority(labels)
        buf._names = arr["device_names"].tolist()
        buf._index = {d: i for i, d in enumerate(buf._names)}
        buf._added, buf._evicted = int(arr["added"]), int(arr["evicted"])
        n, keep = len(values), min(len(values), buf.config.capacity)
        buf._reserve(keep)
        buf._put(slice(0, keep), dev[:keep], values[:keep], labels[:keep], major[:keep],
                 arrival[:keep])  # fmt: skip
        buf._n = keep
        for i in range(keep, n):  # more windows than capacity: evict as add() would
            buf._put(buf._victim(), dev[i], values[i], labels[i], major[i], arrival[i])
            buf._evicted += 1
        return buf


def _corruption(arr: dict[str, np.ndarray], window: int) -> str | None:
    """What is wrong with the arrays of a buffer file whose values have the right shape."""
    n = len(arr["values"])
    if arr["values"].dtype.kind != "f":
        return f"values of type {arr['values'].dtype}, not floats"
    labels, names, dev, arrival = (arr[k] for k in ("labels", "device_names", "device", "arrival"))
    if labels.shape != (n, window) or labels.dtype.kind != "i":
        return f"labels of shape {labels.shape} ({labels.dtype}) for {n} windows"
    if names.ndim != 1 or names.dtype.kind != "U":
        return "device ids are not a list of strings"
    if (
        dev.shape != (n,)
        or dev.dtype.kind != "i"
        or (n and not 0 <= dev.min() <= dev.max() < len(names))
    ):
        return "device indices do not match the device ids"
    if arrival.shape != (n,) or arrival.dtype.kind != "i":
        return "arrival counters do not match the windows"
    if arr["added"].shape != () or arr["evicted"].shape != ():
        return "counters are not numbers"
    if n and not (labels >= 0).any(axis=1).all():
        return "a window has no labelled sample"
    return None


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stitched(
    windows: Windows, stride: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Each device's windows, oldest first, joined into one recording ``(values, labels)``.

    A worker runs a stream model with its state carried from sample to sample, so the trainer
    fine-tunes and the gate scores it on recordings, not window by window from a zero state.
    A window that begins ``stride`` samples into its predecessor (the joiner's overlap) adds
    only its new samples; any other window is appended whole, as a worker's state runs on
    across a gap.

    >>> w = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
    >>> windows = Windows(("a", "b", "a"), np.concatenate([w, w, w + 3]),
    ...                   np.zeros((3, 6), np.int16))
    >>> [(v.ravel().tolist(), d) for (v, _), d in zip(*stitched(windows, stride=3))]
    [([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 'a'), ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 'b')]
    """
    width = windows.values.shape[1]
    overlap = width - stride
    rows: dict[str, list[int]] = {}
    for i, device in enumerate(windows.devices):
        rows.setdefault(device, []).append(i)
    out = []
    for slots in rows.values():
        values, labels = [windows.values[slots[0]]], [windows.labels[slots[0]]]
        for prev, cur in zip(slots, slots[1:], strict=False):
            tail, head = windows.values[prev, stride:], windows.values[cur, :overlap]
            cut = overlap if overlap > 0 and np.array_equal(tail, head) else 0
            values.append(windows.values[cur, cut:])
            labels.append(windows.labels[cur, cut:])
        out.append((np.concatenate(values), np.concatenate(labels).astype(np.int64)))
    return out, list(rows)
