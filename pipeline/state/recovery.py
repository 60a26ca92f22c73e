"""A worker's device states as checkpoints, and back: what moves with a partition.

:func:`snapshot_devices` reads every per-device array a worker keeps (the store's sequence
number, ring buffer and source position, the runtime's hidden states, the activity tracker,
the resampler's carried samples, the gravity frame's filters, the HMM decoder's belief, the
labels a delay holds back, the refiner's state);
:func:`restore_devices` puts them back into another worker. A state written by another model
version cannot be used by this one's weights: those devices are re-primed from their restored
ring buffers, as a hot swap does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.state.checkpoint import DeviceState
from pipeline.swap.priming import primable, prime

if TYPE_CHECKING:
    from pipeline.serving import ServingModel
    from pipeline.worker.activity import ActivityTracker
    from pipeline.worker.delay import Delay
    from pipeline.worker.resampler import Resampler
    from pipeline.worker.state_store import StateStore


def snapshot_devices(
    store: StateStore,
    tracker: ActivityTracker,
    resampler: Resampler,
    model: ServingModel,
    slots: np.ndarray,
    delay: Delay | None = None,
) -> list[DeviceState]:
    """The :class:`DeviceState` of each slot in ``slots`` (slots holding a device); ``model``
    is the one whose version the states carry (the stream model's hidden states with it)."""
    slots = np.asarray(slots, np.int64)
    if not len(slots):
        return []
    version = model.version
    states = model.runtime.get_states(slots) if model.runtime is not None else {}
    h = states.get("h", np.zeros((len(slots), 0, 0), np.float32))
    carried = resampler.snapshot(slots)
    belief = model.decoder.belief[slots] if model.decoder is not None else None
    held = delay.snapshot(slots) if delay is not None else [None] * len(slots)
    refiner = model.refiner
    refined = [refiner.get_state(s) if refiner else None for s in slots.tolist()]
    out = []
    for i, slot in enumerate(slots.tolist()):
        device = store.device(slot)
        kept = store.snapshot(device)
        out.append(
            DeviceState(
                device, version, kept["last_seq"], kept["last_time_ms"], kept["seen"],
                kept["partition"], kept["offset"],
                (int(tracker.current[slot]), int(tracker.candidate[slot]),
                 int(tracker.run[slot]), int(tracker.last_top[slot])),
                h[i], kept["ring"],
                states["c"][i] if "c" in states else None,
                states["next"][i] if "next" in states else None, carried[i],
                states["frame"][i] if "frame" in states else None,
                belief[i] if belief is not None else None, held[i], refined[i],
            )
        )  # fmt: skip
    return out


def restore_devices(
    store: StateStore,
    tracker: ActivityTracker,
    resampler: Resampler,
    model: ServingModel | None,
    states: list[DeviceState],
    delay: Delay | None = None,
) -> np.ndarray:
    """Put ``states`` into the store, the tracker, the resampler, the stream ``model``'s
    runtime and the ``delay`` (devices already held are overwritten); their slots."""
    if not states:
        return np.zeros(0, np.int64)
    shape = store.ring.shape[1:]
    slots = store.restore_all({
        s.device: {"last_seq": s.last_seq, "last_time_ms": s.last_time_ms, "seen": s.seen,
                   "partition": s.partition, "offset": s.offset, "ring": _ring(s, shape)}
        for s in states
    })  # fmt: skip
    track = np.array([s.tracker for s in states], np.int64)
    tracker.current[slots], tracker.candidate[slots] = track[:, 0], track[:, 1]
    tracker.run[slots], tracker.last_top[slots] = track[:, 2], track[:, 3]
    resampler.restore(slots, [s.resample for s in states])
    if delay is not None:
        delay.restore(slots, [s.delayed for s in states])
    if model is None or model.runtime is None:
        return slots
    _restore_beliefs(model, states, slots)
    _restore_refiner(model, states, slots)
    runtime = model.runtime
    expected = {key: value.shape[1:] for key, value in runtime.get_states(slots[:1]).items()}
    same = np.array([s.model == model.version and _shapes(s) == expected for s in states])
    if same.any():
        chosen = [s for s, ok in zip(states, same, strict=True) if ok]
        runtime.set_states(slots[same], {key: np.stack([_arrays(s)[key] for s in chosen])
                                         for key in expected})  # fmt: skip
    if not same.all():  # another model's states: run the ring through this one
        prime(primable(model), store.ring, store.seen, slots[~same])
    return slots


def _restore_beliefs(model: ServingModel, states: list[DeviceState], slots: np.ndarray) -> None:
    """The decoder's beliefs: each device's own where the checkpoint holds one for this model
    version, the prior for the others (primed from there with the hidden states)."""
    decoder = model.decoder
    if decoder is None:
        return
    decoder.ensure_capacity(int(slots.max()) + 1)
    decoder.reset(slots)
    k = len(decoder.prior)
    for slot, s in zip(slots.tolist(), states, strict=True):
        if s.belief is not None and s.model == model.version and len(s.belief) == k:
            decoder.set_state(slot, s.belief)


def _restore_refiner(model: ServingModel, states: list[DeviceState], slots: np.ndarray) -> None:
    """The refiner's states: each device's own where the checkpoint holds one for this model
    version, fresh for the others (primed from there with the hidden states)."""
    refiner = model.refiner
    if refiner is None:
        return
    refiner.ensure_capacity(int(slots.max()) + 1)
    for slot, s in zip(slots.tolist(), states, strict=True):
        if s.refiner is None or s.model != model.version or not refiner.set_state(slot, s.refiner):
            refiner.reset([slot])


def _arrays(s: DeviceState) -> dict[str, np.ndarray]:
    out = {"h": s.h}
    if s.c is not None:
        out["c"] = s.c
    if s.next is not None:
        out["next"] = s.next
    if s.frame is not None:
        out["frame"] = s.frame
    return out


def _shapes(s: DeviceState) -> dict[str, tuple[int, ...]]:
    return {key: value.shape for key, value in _arrays(s).items()}


def _ring(s: DeviceState, shape: tuple[int, int]) -> np.ndarray:
    """The state's ring in the store's layout, also when the ring length changed since."""
    if s.ring.shape == shape:
        return s.ring
    length, channels = s.ring.shape
    if channels != shape[1]:
        return np.zeros(shape, np.float32)  # another channel layout: nothing to keep
    n = min(s.seen, length, shape[0])
    chronological = s.ring[(s.seen - n + np.arange(n)) % length]
    out = np.zeros(shape, np.float32)
    out[(s.seen - n + np.arange(n)) % shape[0]] = chronological
    return out
