"""Activity-change events with hysteresis: a new activity must persist before it is announced."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ActivityChange:
    """A device's confirmed activity changed from ``previous`` (-1: none yet) to ``current``."""

    previous: int
    current: int
    seq: int
    t_ms: float


class ActivityTracker:
    """Per-slot confirmed activity, with a candidate that must last ``min_dwell`` samples.

    >>> tracker = ActivityTracker(min_dwell=3)
    >>> tracker.ensure_capacity(1)
    >>> top = np.array([2, 2, 2, 0, 0, 2, 0, 0, 0])
    >>> [(e.previous, e.current, e.seq) for e in tracker.update(0, top, np.arange(9), np.zeros(9))]
    [(-1, 2, 2), (2, 0, 8)]
    """

    def __init__(self, min_dwell: int = 50) -> None:
        self.min_dwell = max(1, min_dwell)
        self.current = np.zeros(0, np.int64)
        self.candidate = np.zeros(0, np.int64)
        self.run = np.zeros(0, np.int64)
        self.last_top = np.zeros(0, np.int64)
        self.changed_positions = np.zeros(0, np.int64)
        """after :meth:`update`: positions where the most likely activity differs from the
        sample before (for emit="on_change")"""

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

    def steady(self, slots: np.ndarray, top: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per slot: True when its new samples (``top``, ``counts[i]`` each, all >= 1) only
        repeat its confirmed activity, so :meth:`update` would change nothing."""
        current = self.current[slots]
        differs = top != np.repeat(current, counts)
        moved = np.logical_or.reduceat(differs, np.cumsum(counts) - counts)
        return ~moved & (self.candidate[slots] == -1) & (self.last_top[slots] == current)

    def update(
        self, slot: int, top: np.ndarray, seqs: np.ndarray, times_ms: np.ndarray
    ) -> list[ActivityChange]:
        """Feed one device's per-sample most likely activities; return confirmed changes."""
        previous = np.concatenate(([self.last_top[slot]], top[:-1]))
        starts = np.flatnonzero(top != previous)
        self.changed_positions = starts
        self.last_top[slot] = top[-1]
        bounds = np.append(np.flatnonzero(np.diff(top)) + 1, len(top))
        begins = np.concatenate(([0], bounds[:-1]))
        events = []
        current, candidate, run = (
            int(self.current[slot]), int(self.candidate[slot]), int(self.run[slot])
        )  # fmt: skip
        for begin, end in zip(begins.tolist(), bounds.tolist(), strict=True):
            value, length = int(top[begin]), end - begin
            if value == current:
                candidate, run = -1, 0
                continue
            run = run + length if value == candidate else length
            candidate = value
            if run >= self.min_dwell:
                at = end - 1 - (run - self.min_dwell)
                events.append(ActivityChange(current, value, int(seqs[at]), float(times_ms[at])))
                current, candidate, run = value, -1, 0
        self.current[slot], self.candidate[slot], self.run[slot] = current, candidate, run
        return events
