"""Device-state checkpoints: what a worker writes to the compacted ``har.state`` topic and reads
back when it is given partitions (the changelog of Kafka Streams, per device).

One message per device, keyed by device id, on the same partition number as the device's input
records, so that the owner of input partition ``p`` restores its devices from state partition
``p``. The value is a versioned binary snapshot (little-endian)::

    offset size  field
    0      2     magic b"HC"
    2      1     version (1)
    3      1     flags: bit 0 = LSTM cell state, bit 1 = next-step prediction, bit 2 = resampler,
                 bit 3 = gravity frame, bit 4 = HMM belief, bit 5 = next-step predictions of
                 another length than C (an ensemble's: one per member), bit 6 = delayed labels,
                 bit 7 = the refiner's state
    4      2     layers L (uint16; an ensemble's K members x their layers, member by member)
    6      2     hidden H (uint16)
    8      2     channels C (uint16)
    10     2     ring length R (uint16)
    12     2     model version length V (uint16)
    14     2     device id length D (uint16)
    16     8     last applied sequence number (int64)
    24     8     event time of that sample, ms (float64)
    32     8     samples the device has seen (int64)
    40     4     source partition (int32)
    44     8     source offset of the last record applied (int64)
    52     32    activity tracker: current, candidate, run, last top (4 x int64)
    84     V+D   model version, device id (UTF-8)
    ...    2     the next-step prediction's length F (uint16; flag bit 3 or 5: the gravity
                 frame's features, times an ensemble's members)
    ...    2     classes K (uint16; flag bit 4)
    ...    4     delayed labels: samples held N, values each W (2 x uint16; flag bit 6)
    ...    2     the refiner's state length S (uint16; flag bit 7)
    ...    4LH   h, float32 (L x H)
    ...    4LH   c, float32 (flag bit 0)
    ...    4F    the last next-step prediction, float32 (flag bit 1; F = C without bit 3)
    ...    32    the gravity frame's filters, float32 (8; flag bit 3)
    ...    4K    the HMM decoder's belief over the classes, float32 (flag bit 4)
    ...    4S    the refiner's state, float32 (flag bit 7; see
                 :meth:`models.refiner_runtime.RefinerRuntime.get_state`)
    ...    4RC   ring buffer as the store keeps it (slot ``seen % R`` is the next to write)
    ...    8NW   the samples whose labels the delay still holds, float64, oldest first
                 (flag bit 6; see :meth:`pipeline.worker.delay.Delay.snapshot`)
    ...    8K    a device at another rate than the model's: what its resampler carries,
                 float64, the rest of the message (flag bit 2; see
                 :meth:`pipeline.worker.resampler.Resampler.snapshot`)

Decoding views the payload with ``np.frombuffer``; nothing is unpickled.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.exceptions import PipelineError
from streams.protocols import Table

MAGIC = b"HC"
VERSION = 1
STATE_TOPIC = "har.state"
_HEADER = struct.Struct("<2sBBHHHHHHqdqiq4q")
_U16 = struct.Struct("<H")
_F32, _F64 = np.dtype("<f4"), np.dtype("<f8")
FRAME_STATE = 8
"""float32 values of a gravity frame's state (:data:`models.frame.STATE_SIZE`)"""


class CheckpointError(PipelineError):
    """A checkpoint that cannot be read (truncated, another format, another model shape)."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often device states are checkpointed.

    A checkpoint (of the devices that changed since the last one) is written every
    ``every_ms`` or ``every_records`` records, whichever comes first, and always before the
    source offsets are committed: offsets are committed only at checkpoints. ``enabled=False``
    commits after every batch and keeps no state outside the worker (a restart starts afresh).
    """

    enabled: bool = True
    topic: str = STATE_TOPIC
    every_ms: float = 5000.0
    every_records: int = 50_000


@dataclass
class DeviceState:
    """Everything a worker keeps about one device."""

    device: str
    model: str
    last_seq: int
    last_time_ms: float
    seen: int
    partition: int
    offset: int
    tracker: tuple[int, int, int, int]
    h: np.ndarray
    """(layers, hidden)"""
    ring: np.ndarray
    """(ring length, channels), as the state store keeps it"""
    c: np.ndarray | None = None
    next: np.ndarray | None = field(default=None)
    resample: np.ndarray | None = None
    """float64: what the device's resampler carries (a device at another rate than the
    model's)"""
    frame: np.ndarray | None = None
    """(8,): the gravity frame's filters, for a model that reads one"""
    belief: np.ndarray | None = None
    """(classes,): the HMM decoder's belief, for a model whose probabilities are decoded"""
    delayed: np.ndarray | None = None
    """(held, width) float64: what a worker with ``delay_ms`` holds back for the device"""
    refiner: np.ndarray | None = None
    """float32: the state of the model's refiner, for a worker that mixes its labels in"""


def encode_state(s: DeviceState) -> bytes:
    """The binary snapshot of ``s`` (see the module docstring)."""
    model, device = s.model.encode(), s.device.encode()
    layers, hidden = s.h.shape
    ring_len, channels = s.ring.shape
    longer = s.frame is None and s.next is not None and len(s.next) != channels
    flags = (
        (s.c is not None) | (s.next is not None) << 1 | (s.resample is not None) << 2
        | (s.frame is not None) << 3 | (s.belief is not None) << 4 | longer << 5
        | (s.delayed is not None) << 6 | (s.refiner is not None) << 7
    )  # fmt: skip
    # with a gravity frame, the next-step prediction is of its features: their number
    explicit = s.frame is not None or longer
    inputs = _U16.pack(0 if s.next is None else len(s.next)) if explicit else b""
    inputs += b"" if s.belief is None else _U16.pack(len(s.belief))
    if s.delayed is not None:
        inputs += _U16.pack(len(s.delayed)) + _U16.pack(s.delayed.shape[1])
    inputs += b"" if s.refiner is None else _U16.pack(len(s.refiner))
    header = _HEADER.pack(
        MAGIC, VERSION, flags, layers, hidden, channels, ring_len, len(model), len(device),
        s.last_seq, s.last_time_ms, s.seen, s.partition, s.offset, *s.tracker,
    )  # fmt: skip
    arrays = [s.h] + [a for a in (s.c, s.next, s.frame, s.belief, s.refiner) if a is not None]
    arrays.append(s.ring)
    tail = b"" if s.delayed is None else np.ascontiguousarray(s.delayed, _F64).tobytes()
    tail += b"" if s.resample is None else np.ascontiguousarray(s.resample, _F64).tobytes()
    return b"".join([header, model, device, inputs, *(np.ascontiguousarray(a, _F32).tobytes()
                                              for a in arrays), tail])  # fmt: skip


def decode_state(data: bytes) -> DeviceState:
    """A :class:`DeviceState` from :func:`encode_state`'s bytes; :class:`CheckpointError` if
    they are not one."""
    if len(data) < _HEADER.size:
        raise CheckpointError(f"{len(data)} bytes: shorter than a checkpoint header")
    (magic, version, flags, layers, hidden, channels, ring_len, model_len, device_len, last_seq,
     last_time_ms, seen, partition, offset, *tracker) = _HEADER.unpack_from(data)  # fmt: skip
    if magic != MAGIC or version != VERSION:
        raise CheckpointError(f"not a version-{VERSION} checkpoint ({magic!r}, {version})")
    at = _HEADER.size + model_len + device_len
    inputs = channels
    if flags & (8 | 32):
        (inputs,), at = _lengths(data, at, 1, "its next-step length")
    classes = 0
    if flags & 16:
        (classes,), at = _lengths(data, at, 1, "a decoded model's checkpoint")
    held = width = 0
    if flags & 64:
        (held, width), at = _lengths(data, at, 2, "a delayed worker's checkpoint")
    refined = 0
    if flags & 128:
        (refined,), at = _lengths(data, at, 1, "a refined worker's checkpoint")
    sizes = [layers * hidden, layers * hidden if flags & 1 else 0, inputs if flags & 2 else 0,
             FRAME_STATE if flags & 8 else 0, classes, refined, ring_len * channels]  # fmt: skip
    end = at + 4 * sum(sizes)
    delayed_at, end = end, end + 8 * held * width
    extra = len(data) - end
    if extra < 0 or (extra and not flags & 4) or (flags & 4 and (extra == 0 or extra % 8)):
        raise CheckpointError(f"{len(data)} bytes, expected {end} (+ 8 x K with a resampler)")
    delayed = None
    if flags & 64:
        delayed = np.frombuffer(data, _F64, count=held * width, offset=delayed_at)
        delayed = delayed.reshape(held, width)
    model = data[_HEADER.size : _HEADER.size + model_len].decode()
    device = data[_HEADER.size + model_len : _HEADER.size + model_len + device_len].decode()
    values = np.frombuffer(data, _F32, count=sum(sizes), offset=at)
    parts, start = [], 0
    for n in sizes:
        parts.append(values[start : start + n])
        start += n
    h, c, nxt, frame, belief, refiner, ring = parts
    return DeviceState(
        device, model, last_seq, last_time_ms, seen, partition, offset, tuple(tracker),
        h.reshape(layers, hidden), ring.reshape(ring_len, channels),
        c.reshape(layers, hidden) if flags & 1 else None, nxt if flags & 2 else None,
        np.frombuffer(data, _F64, offset=end) if flags & 4 else None,
        frame if flags & 8 else None, belief if flags & 16 else None, delayed,
        refiner if flags & 128 else None,
    )  # fmt: skip


def _lengths(data: bytes, at: int, count: int, what: str) -> tuple[tuple[int, ...], int]:
    """The ``count`` uint16 lengths at ``at`` of a checkpoint, and where its next field starts
    (:class:`CheckpointError` naming ``what`` it is, if it ends before)."""
    end = at + count * _U16.size
    if len(data) < end:
        raise CheckpointError(f"{len(data)} bytes: shorter than {what}")
    return struct.unpack_from(f"<{count}H", data, at), end


class Checkpointer:
    """Writes device states to a :class:`~streams.protocols.Table` and reads them back.

    >>> from streams.memory import MemoryTable
    >>> ckpt = Checkpointer(MemoryTable(), CheckpointConfig(every_records=10))
    >>> ckpt.due(records=3), ckpt.due(records=10)
    (False, True)
    """

    def __init__(self, table: Table, config: CheckpointConfig | None = None) -> None:
        self.table = table
        self.config = config or CheckpointConfig()
        self._last = time.monotonic()
        self.written = 0
        """device states written so far"""
        self.unreadable: list[str] = []

    def due(self, records: int) -> bool:
        """Whether a checkpoint is due after ``records`` records since the last one."""
        cfg = self.config
        elapsed_ms = (time.monotonic() - self._last) * 1000.0
        return records >= cfg.every_records or elapsed_ms >= cfg.every_ms

    def write(self, states: Sequence[DeviceState], deleted: Sequence[tuple[str, int]] = ()) -> None:
        """Delete the ``(device, partition)`` states (evicted devices), put ``states`` (a device
        evicted and back since is deleted, then put), and wait until all is durable."""
        for device, partition in deleted:
            if partition >= 0:
                self.table.put(partition, device.encode(), None)
        for state in states:
            self.table.put(state.partition, state.device.encode(), encode_state(state))
        self.table.flush()
        self.written += len(states)
        self._last = time.monotonic()

    def read(self, partitions: Collection[int]) -> list[DeviceState]:
        """The latest state of every device in ``partitions`` (unreadable ones are skipped and
        named in ``unreadable``: the device then starts afresh)."""
        out = []
        for key, value in self.table.read(partitions).items():
            try:
                out.append(decode_state(value))
            except (CheckpointError, UnicodeDecodeError) as exc:
                self.unreadable.append(f"{key!r}: {exc}")
        return out

    def close(self) -> None:
        self.table.close()
