"""The batched activity tracker against the hysteresis rule written one sample at a time."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.worker.activity import ActivityTracker


def _reference(tops: list[np.ndarray], min_dwell: int) -> list[tuple[int, int, int]]:
    """(previous, current, sample index) of each confirmed change of one device's stream fed
    in the given pieces, one sample at a time."""
    current, candidate, run, events, index = -1, -1, 0, [], 0
    for piece in tops:
        for value in piece.tolist():
            if value == current:
                candidate, run = -1, 0
            else:
                run = run + 1 if value == candidate else 1
                candidate = value
                if run >= min_dwell:
                    events.append((current, value, index))
                    current, candidate, run = value, -1, 0
            index += 1
    return events


@pytest.mark.parametrize("min_dwell", [1, 3, 20])
def test_batched_events_equal_one_sample_at_a_time(min_dwell):
    rng = np.random.default_rng(min_dwell)
    devices, batches = 40, 12
    streams = {d: [] for d in range(devices)}
    tracker = ActivityTracker(min_dwell)
    tracker.ensure_capacity(devices)
    seen = np.zeros(devices, int)
    got = {d: [] for d in range(devices)}
    for _ in range(batches):
        present = np.flatnonzero(rng.random(devices) < 0.7)  # devices come and go
        counts = rng.integers(1, 60, len(present))
        # sticky activities with noise: long stretches, short flickers
        top = np.concatenate([np.where(rng.random(n) < 0.15, rng.integers(0, 4, n),
                                       rng.integers(0, 4)) for n in counts])  # fmt: skip
        events, changed = tracker.update(present, top, counts)
        begins = np.cumsum(counts) - counts
        for i, d in enumerate(present.tolist()):
            piece = top[begins[i] : begins[i] + counts[i]]
            last = streams[d][-1][-1] if streams[d] else -1
            expected = piece != np.concatenate(([last], piece[:-1]))
            assert (changed[begins[i] : begins[i] + counts[i]] == expected).all()
            streams[d].append(piece)
        assert [e.run for e in events] == sorted(e.run for e in events)
        for e in events:
            d = int(present[e.run])
            got[d].append((e.previous, e.current, int(seen[d]) + e.position))
        seen[present] += counts
    for d in range(devices):
        assert got[d] == _reference(streams[d], min_dwell)
    assert sum(map(len, got.values())) > devices  # the streams did change activity


def test_reset_forgets_a_candidate():
    tracker = ActivityTracker(min_dwell=3)
    tracker.ensure_capacity(1)
    tracker.update(np.array([0]), np.array([1, 1]), np.array([2]))
    tracker.reset(np.array([0]))
    events, _ = tracker.update(np.array([0]), np.array([1, 1]), np.array([2]))
    assert events == []  # two samples after the reset, not four
