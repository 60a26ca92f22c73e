"""Activity-change events with hysteresis: a new activity must persist before it is announced."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ActivityChange:
    """Device ``run`` of a batch: its confirmed activity changed from ``previous`` (-1: none
    yet) to ``current`` at its new sample ``position``."""

    run: int
    previous: int
    current: int
    position: int


class ActivityTracker:
    """Per-slot confirmed activity, with a candidate that must last ``min_dwell`` samples.

    Every device of a batch is followed at once: the loop runs over the k-th change of the
    most likely activity within a batch (a few per device), never over devices or samples.

    >>> tracker = ActivityTracker(min_dwell=3)
    >>> tracker.ensure_capacity(2)
    >>> top = np.array([2, 2, 2, 0, 0, 2, 0, 0, 0, 1, 1])
    >>> events, changed = tracker.update(np.array([0, 1]), top, np.array([9, 2]))
    >>> [(e.run, e.previous, e.current, e.position) for e in events]
    [(0, -1, 2, 2), (0, 2, 0, 8)]
    >>> np.flatnonzero(changed).tolist()  # where the most likely activity differs from before
    [0, 3, 5, 6, 9]
    """

    def __init__(self, min_dwell: int = 50) -> None:
        self.min_dwell = max(1, min_dwell)
        self.current = np.zeros(0, np.int64)
        self.candidate = np.zeros(0, np.int64)
        self.run = np.zeros(0, np.int64)
        self.last_top = np.zeros(0, np.int64)

    def ensure_capacity(self, capacity: int) -> None:
        grow = capacity - len(self.current)
        if grow > 0:
            fill = np.full(grow, -1, np.int64)
            self.current = np.concatenate([self.current, fill])
            self.candidate = np.concatenate([self.candidate, fill])
            self.run = np.concatenate([self.run, np.zeros(grow, np.int64)])
            self.last_top = np.concatenate([self.last_top, fill])

    def reset(self, slots: np.ndarray) -> None:
        self.current[slots] = -1
        self.candidate[slots] = -1
        self.run[slots] = 0
        self.last_top[slots] = -1

    def update(
        self, slots: np.ndarray, top: np.ndarray, counts: np.ndarray
    ) -> tuple[list[ActivityChange], np.ndarray]:
        """Feed the per-sample most likely activities ``top`` of ``slots`` (``counts[i] >= 1``
        each, slot after slot): the confirmed changes, in sample order, and per sample whether
        its activity differs from the sample before it (for ``emit="on_change"``)."""
        slots, counts = np.asarray(slots, np.intp), np.asarray(counts, np.int64)
        top = np.asarray(top, np.int64)
        begins = np.cumsum(counts) - counts
        previous = np.empty_like(top)
        previous[1:] = top[:-1]
        previous[begins] = self.last_top[slots]
        changed = top != previous
        self.last_top[slots] = top[begins + counts - 1]
        # segments: stretches of one activity within a device's new samples
        cut = np.zeros(len(top), bool)
        cut[begins] = True
        cut[1:] |= top[1:] != top[:-1]
        seg_begin = np.flatnonzero(cut)
        seg_end = np.append(seg_begin[1:], len(top))
        seg_owner = np.searchsorted(begins, seg_begin, side="right") - 1
        seg_rank = np.arange(len(seg_begin)) - np.searchsorted(seg_owner, seg_owner)
        current, candidate = self.current[slots], self.candidate[slots]
        run = self.run[slots]
        found: list[np.ndarray] = []
        for k in range(int(seg_rank.max(initial=-1)) + 1):
            seg = np.flatnonzero(seg_rank == k)
            d, value = seg_owner[seg], top[seg_begin[seg]]
            length = seg_end[seg] - seg_begin[seg]
            same = value == current[d]
            grown = np.where(value == candidate[d], run[d] + length, length)
            fire = ~same & (grown >= self.min_dwell)
            if fire.any():
                at = seg_end[seg[fire]] - 1 - (grown[fire] - self.min_dwell)
                found.append(np.stack([at, d[fire], current[d[fire]], value[fire]]))
            settled = same | fire
            current[d[fire]] = value[fire]
            candidate[d] = np.where(settled, -1, value)
            run[d] = np.where(settled, 0, grown)
        self.current[slots], self.candidate[slots], self.run[slots] = current, candidate, run
        if not found:
            return [], changed
        events = np.concatenate(found, axis=1)
        events = events[:, np.argsort(events[0], kind="stable")]
        return [
            ActivityChange(run, prev, cur, at - int(begins[run]))
            for at, run, prev, cur in events.T.tolist()
        ], changed
