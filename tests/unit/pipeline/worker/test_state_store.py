"""The state store: slots, growth without losing state, ring buffers, eviction, snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.worker.state_store import StateStore, StoreConfig, StoreFull


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_slots_are_stable_and_growth_keeps_everything():
    grown, resets = [], []
    store = StateStore(2, StoreConfig(ring=4, initial_capacity=2), on_grow=grown.append,
                       on_reset=lambda s: resets.append(s.tolist()))  # fmt: skip
    a = store.slots_for(["a", "b"])
    store.push(a, np.array([3, 1]), np.arange(8, dtype=np.float32).reshape(4, 2))
    store.last_seq[a] = [2, 0]
    more = store.slots_for([f"d{i}" for i in range(5)])
    assert store.capacity == 8 and grown == [2, 4, 8]
    assert store.slots_for(["a", "b"]).tolist() == a.tolist() and len(set(more)) == 5
    assert store.last_seq[a].tolist() == [2, 0]
    np.testing.assert_array_equal(store.recent(a[:1], 3)[0], [[0, 1], [2, 3], [4, 5]])


def test_ring_keeps_the_last_samples_in_order_and_pads_short_ones():
    store = StateStore(1, StoreConfig(ring=4))
    s = store.slots_for(["x", "y"])
    store.push(s, np.array([6, 2]), np.arange(8, dtype=np.float32)[:, None])
    store.push(s[:1], np.array([1]), np.array([[99.0]], np.float32))
    np.testing.assert_array_equal(store.recent(s, 4)[..., 0], [[3, 4, 5, 99], [0, 0, 6, 7]])
    with pytest.raises(Exception, match="last 4"):
        store.recent(s, 5)


def test_idle_eviction_and_bound_policies():
    clock = Clock()
    store = StateStore(1, StoreConfig(idle_ttl_s=10, max_devices=2), clock=clock)
    store.slots_for(["old"])
    clock.now = 5
    store.slots_for(["new"])
    clock.now = 12
    assert store.evict_idle() == ["old"] and store.devices() == ["new"]
    store.slots_for(["third"])
    clock.now = 13
    store.slots_for(["fourth"])  # at the bound: the least recently seen ("new") goes
    assert sorted(store.devices()) == ["fourth", "third"] and store.evictions == 2
    strict = StateStore(1, StoreConfig(max_devices=1, overflow="reject"))
    strict.slots_for(["one"])
    with pytest.raises(StoreFull):
        strict.slots_for(["two"])


def test_new_devices_at_the_bound_evict_others_never_each_other():
    clock, resets = Clock(), []
    store = StateStore(1, StoreConfig(max_devices=2), clock=clock,
                       on_reset=lambda s: resets.append(sorted(s.tolist())))  # fmt: skip
    store.slots_for(["a", "b"])
    clock.now = 1
    store.slots_for(["a"])
    clock.now = 2
    resets.clear()
    slots = store.slots_for(["c", "d"])  # b, then a (seen before this batch) make room
    assert sorted(store.devices()) == ["c", "d"] and len(set(slots.tolist())) == 2
    assert resets[-1] == sorted(slots.tolist())  # the new slots, reset in one call
    clock.now = 3
    slots = store.slots_for(["c", "e", "f"])  # more than the bound in one batch: none lost
    assert sorted(store.devices()) == ["c", "e", "f"] and len(set(slots.tolist())) == 3
    assert store.slot("c") == slots[0] and store.evictions == 3
    clock.now = 4
    store.slots_for(["g"])  # back to the bound: the two least recently seen go
    assert len(store) == 2 and "g" in store and store.evictions == 5


def test_snapshot_and_restore_one_device():
    store = StateStore(3, StoreConfig(ring=5))
    s = store.slots_for(["dev"])
    store.push(s, np.array([4]), np.ones((4, 3), np.float32))
    store.last_seq[s] = 41
    snap = store.snapshot("dev")
    store.evict(["dev"])
    assert "dev" not in store
    other = StateStore(3, StoreConfig(ring=5))
    slot = other.restore("dev", snap)
    assert other.last_seq[slot] == 41 and other.seen[slot] == 4
    np.testing.assert_array_equal(other.recent(np.array([slot]), 4)[0], np.ones((4, 3)))


def test_reset_clears_and_tells_the_owner():
    told = []
    store = StateStore(1, on_reset=lambda s: told.append(s.tolist()))
    s = store.slots_for(["a"])
    store.push(s, np.array([2]), np.ones((2, 1), np.float32))
    store.reset(s)
    assert store.seen[s][0] == 0 and store.last_seq[s][0] == -1 and told[-1] == s.tolist()


def test_many_new_devices_in_one_call_grow_the_store():
    store = StateStore(1, StoreConfig(initial_capacity=2))
    slots = store.slots_for([f"d{i}" for i in range(1000)])
    assert len(set(slots.tolist())) == 1000 and store.capacity >= 1000
    assert (store.last_seq[slots] == -1).all()


def test_snapshot_and_restore_all_devices():
    store = StateStore(2, StoreConfig(ring=3))
    slots = store.slots_for(["a", "b", "c"])
    store.push(slots, np.array([1, 2, 3]), np.arange(12, dtype=np.float32).reshape(6, 2))
    store.last_seq[slots] = [0, 1, 2]
    copy = StateStore(2, StoreConfig(ring=3))
    restored = copy.restore_all({d: store.snapshot(d) for d in store.devices()})
    assert sorted(copy.devices()) == ["a", "b", "c"] and len(restored) == 3
    for device in ("a", "b", "c"):
        a, b = store.slot(device), copy.slot(device)
        assert store.last_seq[a] == copy.last_seq[b]
        np.testing.assert_array_equal(store.recent(np.array([a]), 3), copy.recent(np.array([b]), 3))
