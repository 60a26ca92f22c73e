"""Per-device state: a slot per device in flat arrays, grown by doubling, with a ring buffer.

Device ids map to slots; every per-device quantity (last applied sequence number and event time,
when the device was last seen, the ring buffer of its last ``ring`` samples, how many samples it
has seen) lives in a NumPy array indexed by slot, so a batch of devices is read and written with
one fancy-indexing operation. The recurrent hidden state lives in the runtime under the same
slots; the store tells its owner when slots are reset, and before devices are evicted for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.exceptions import PipelineError

Overflow = Literal["evict_lru", "reject"]


class StoreFull(PipelineError):
    """A new device arrived while the store held ``max_devices`` and the policy is reject."""


@dataclass(frozen=True)
class StoreConfig:
    """Bounds and policies of the state store.

    ``max_gap``: a device whose sequence number jumps by more than this many missing samples
    starts from a fresh state (its old state no longer describes it). ``idle_ttl_s``: devices not
    seen for this long are evicted by :meth:`StateStore.evict_idle`. ``max_devices`` with
    ``overflow``: at the bound a new device evicts the least recently seen one (``evict_lru``;
    never a device of the same batch: a batch of more devices than the bound is held whole) or
    is refused (``reject``).
    """

    ring: int = 128
    max_gap: int = 50
    idle_ttl_s: float = 600.0
    max_devices: int = 1_000_000
    overflow: Overflow = "evict_lru"
    initial_capacity: int = 1024


class StateStore:
    """Device id -> slot, and per-slot arrays.

    >>> store = StateStore(channels=2, config=StoreConfig(ring=3))
    >>> slots = store.slots_for(["a", "b"])
    >>> store.push(slots, np.array([2, 1]), np.arange(6, dtype=np.float32).reshape(3, 2))
    >>> store.recent(slots[:1], 2).tolist()
    [[[0.0, 1.0], [2.0, 3.0]]]
    """

    def __init__(
        self,
        channels: int,
        config: StoreConfig | None = None,
        on_grow: Callable[[int], None] | None = None,
        on_reset: Callable[[np.ndarray], None] | None = None,
        on_evict: Callable[[np.ndarray], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or StoreConfig()
        self.channels = channels
        self._on_grow = on_grow
        self._on_reset = on_reset
        self._on_evict = on_evict
        self._clock = clock
        self._slot: dict[str, int] = {}
        self._device: list[str | None] = []
        self._free: list[int] = []
        self.capacity = 0
        self.evictions = 0
        self.forgotten: list[tuple[str, int]] | None = None
        """set to a list to collect the (device, partition) of every eviction (so that their
        checkpoints can be deleted); handovers are not collected"""
        self._grow(max(1, self.config.initial_capacity))

    # -- capacity ---------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        ring, c = self.config.ring, self.channels

        def grown(arr: np.ndarray | None, shape: tuple[int, ...], dtype, fill) -> np.ndarray:
            new = np.full((capacity, *shape), fill, dtype=dtype)
            if arr is not None:
                new[:old] = arr
            return new

        first = old == 0
        self.last_seq = grown(None if first else self.last_seq, (), np.int64, -1)
        self.last_time_ms = grown(None if first else self.last_time_ms, (), np.float64, np.nan)
        self.last_seen = grown(None if first else self.last_seen, (), np.float64, -np.inf)
        self.seen = grown(None if first else self.seen, (), np.int64, 0)
        self.ring = grown(None if first else self.ring, (ring, c), np.float32, 0.0)
        self.partition = grown(None if first else self.partition, (), np.int32, -1)
        self.offset = grown(None if first else self.offset, (), np.int64, -1)
        """source partition and offset of the last record applied per slot"""
        self.dirty = grown(None if first else self.dirty, (), bool, False)
        """changed since the last checkpoint"""
        self._device.extend([None] * (capacity - old))
        self._free.extend(range(capacity - 1, old - 1, -1))  # pop() hands out low slots first
        self.capacity = capacity
        if self._on_grow is not None:
            self._on_grow(capacity)

    # -- devices ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, device: str) -> bool:
        return device in self._slot

    def slot(self, device: str) -> int | None:
        return self._slot.get(device)

    def device(self, slot: int) -> str | None:
        return self._device[slot]

    def devices(self) -> list[str]:
        return list(self._slot)

    def used_slots(self) -> np.ndarray:
        """The slots holding a device, ascending."""
        return np.sort(np.fromiter(self._slot.values(), dtype=np.int64, count=len(self._slot)))

    def slots_for(self, devices: Sequence[str]) -> np.ndarray:
        """Slots of ``devices``, allocating fresh (zeroed) ones for new devices. At the
        ``max_devices`` bound a new device evicts the least recently seen device not among
        ``devices`` (when every one is, the store holds more for this batch)."""
        get = self._slot.get
        found = [get(device) for device in devices]
        now = self._clock()
        if None in found:  # new devices, in order
            fresh: list[int] = []
            self.last_seen[[s for s in found if s is not None]] = np.inf  # no victims
            try:
                for i, slot in enumerate(found):
                    if slot is None:
                        slot = get(devices[i])  # the same new device twice: allocated just now
                        if slot is None:
                            slot = self._allocate(devices[i])
                            fresh.append(slot)
                        found[i] = slot
            finally:
                self.last_seen[[s for s in found if s is not None]] = now
                self.reset(np.array(fresh, dtype=np.int64))  # one call for every new device
        out = np.array(found, dtype=np.int64)
        self.last_seen[out] = now
        return out

    def _allocate(self, device: str) -> int:
        if len(self._slot) >= self.config.max_devices:
            if self.config.overflow == "reject":
                raise StoreFull(f"{device}: the store already holds {len(self._slot)} devices")
            used = self.used_slots()  # the least recent first; inf: this batch's devices
            over = len(self._slot) - self.config.max_devices + 1
            victims = used[np.argsort(self.last_seen[used], kind="stable")[:over]]
            self.evict([self._device[v] for v in victims[self.last_seen[victims] < np.inf]])
        if not self._free:
            self._grow(self.capacity * 2)
        slot = self._free.pop()
        self._slot[device] = slot
        self._device[slot] = device
        self.last_seen[slot] = np.inf
        return slot

    def evict(self, devices: Iterable[str], handed_over: bool = False) -> list[str]:
        """Forget ``devices`` (unknown ones are ignored); return those evicted.
        ``handed_over``: another worker owns them now (not counted as evictions, and the owner
        is not told through ``on_evict``: their state lives on elsewhere)."""
        gone = [d for d in devices if d in self._slot]
        slots = np.array([self._slot[d] for d in gone], dtype=np.int64)
        if len(slots) and not handed_over and self._on_evict is not None:
            self._on_evict(slots)  # still mapped to their devices
        for d in gone:
            del self._slot[d]
        if self.forgotten is not None and not handed_over:
            self.forgotten.extend(zip(gone, self.partition[slots].tolist(), strict=True))
        for slot in slots.tolist():
            self._device[slot] = None
            self._free.append(slot)
        self.evictions += 0 if handed_over else len(gone)
        if len(slots):
            self.reset(slots)
        return gone

    def evict_idle(self, now: float | None = None) -> list[str]:
        """Evict the devices not seen for ``idle_ttl_s``."""
        if not self._slot:
            return []
        now = self._clock() if now is None else now
        used = self.used_slots()
        idle = used[now - self.last_seen[used] > self.config.idle_ttl_s]
        return self.evict([self._device[s] for s in idle.tolist()])

    def reset(self, slots: np.ndarray) -> None:
        """Forget what ``slots`` have seen (sequence, ring buffer) and tell the owner."""
        self.last_seq[slots] = -1
        self.last_time_ms[slots] = np.nan
        self.seen[slots] = 0
        self.ring[slots] = 0.0
        self.dirty[slots] = False
        if self._on_reset is not None:
            self._on_reset(slots)

    # -- samples ----------------------------------------------------------------------------

    def push(self, slots: np.ndarray, counts: np.ndarray, samples: np.ndarray) -> None:
        """Append ``counts[i]`` samples of ``slots[i]`` (concatenated in ``samples``) to the
        ring buffers, without a Python loop over devices."""
        ring = self.config.ring
        owner = np.repeat(slots, counts)
        starts = np.cumsum(counts) - counts
        within = np.arange(len(owner)) - np.repeat(starts, counts)
        keep = within >= np.repeat(counts, counts) - ring  # one write per ring cell
        owner, within = owner[keep], within[keep]
        self.ring[owner, (self.seen[owner] + within) % ring] = samples[keep]
        self.seen[slots] += counts

    def recent(self, slots: np.ndarray, length: int | None = None) -> np.ndarray:
        """The last ``length`` samples of each slot, oldest first: ``(len(slots), length, C)``.

        Slots that have seen fewer samples are zero-padded at the front.
        """
        ring = self.config.ring
        length = ring if length is None else length
        if length > ring:
            raise PipelineError(f"only the last {ring} samples are kept, not {length}")
        idx = (self.seen[slots][:, None] - length + np.arange(length)) % ring
        out = self.ring[slots[:, None], idx]
        short = self.seen[slots] < length
        if short.any():
            pad = (length - self.seen[slots])[:, None] > np.arange(length)
            out[pad] = 0.0
        return out

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self, device: str) -> dict[str, np.ndarray | int | float]:
        """Everything the store keeps about ``device`` (copies)."""
        slot = self._slot[device]
        return {
            "last_seq": int(self.last_seq[slot]),
            "last_time_ms": float(self.last_time_ms[slot]),
            "seen": int(self.seen[slot]),
            "partition": int(self.partition[slot]),
            "offset": int(self.offset[slot]),
            "ring": self.ring[slot].copy(),
        }

    def restore(self, device: str, snap: dict) -> int:
        """Put ``device`` back as :meth:`snapshot` described it; return its slot."""
        return int(self.restore_all({device: snap})[0])

    def restore_all(self, snapshots: dict[str, dict]) -> np.ndarray:
        """Put every device back as :meth:`snapshot` described it (not changed since the last
        checkpoint); their slots."""
        snaps = list(snapshots.values())
        slots = self.slots_for(list(snapshots))  # may grow the arrays: index them afterwards
        for key in ("last_seq", "last_time_ms", "seen"):
            getattr(self, key)[slots] = [s[key] for s in snaps]
        self.partition[slots] = [s.get("partition", -1) for s in snaps]
        self.offset[slots] = [s.get("offset", -1) for s in snaps]
        if snaps:
            self.ring[slots] = np.stack([s["ring"] for s in snaps])
        self.dirty[slots] = False
        return slots

    def memory_bytes(self) -> int:
        """Bytes held by the per-slot arrays (the runtime's hidden states not included)."""
        arrays = (self.last_seq, self.last_time_ms, self.last_seen, self.seen, self.ring,
                  self.partition, self.offset, self.dirty)  # fmt: skip
        return sum(a.nbytes for a in arrays)
