"""Drift detection on the champion's online error: the Page-Hinkley test.

The trainer feeds one value per labelled window, the champion's error rate on it (0 = all its
samples right, 1 = all wrong). Page-Hinkley accumulates how far each value lies above the
running mean (less a tolerated ``delta``) and fires when that sum climbs ``threshold`` above its
lowest point: a sustained rise in error, not a single bad window.

>>> detector = PageHinkley(PageHinkleyConfig(delta=0.05, threshold=2.0, min_samples=20))
>>> [detector.update(0.05) for _ in range(50)].count(True)
0
>>> fired = [detector.update(0.6) for _ in range(20)]
>>> fired.index(True)  # the rise is caught after a handful of bad windows
4
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.exceptions import ConfigError


@dataclass(frozen=True)
class PageHinkleyConfig:
    """``delta``: the rise in error tolerated as noise; ``threshold``: the cumulative excess
    that counts as drift; ``min_samples``: values seen before the test may fire (and after it
    fired, since it then starts afresh)."""

    delta: float = 0.05
    threshold: float = 3.0
    min_samples: int = 30

    def __post_init__(self) -> None:
        if self.delta < 0 or self.threshold <= 0 or self.min_samples < 1:
            raise ConfigError("Page-Hinkley needs delta >= 0, threshold > 0, min_samples >= 1")


class PageHinkley:
    """A one-sided Page-Hinkley test for an increase in the mean of a stream of values."""

    def __init__(self, config: PageHinkleyConfig | None = None) -> None:
        self.config = config or PageHinkleyConfig()
        self.detections = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (after a detection, or once a new champion serves)."""
        self.count = 0
        self.mean = 0.0
        self.cumulative = 0.0
        self.minimum = 0.0

    @property
    def statistic(self) -> float:
        """How far the cumulative excess stands above its lowest point."""
        return self.cumulative - self.minimum

    def update(self, value: float) -> bool:
        """Add one value; True when it completes a detection (the test then starts afresh)."""
        if not math.isfinite(value):
            return False
        self.count += 1
        self.mean += (value - self.mean) / self.count
        self.cumulative += value - self.mean - self.config.delta
        self.minimum = min(self.minimum, self.cumulative)
        if self.count >= self.config.min_samples and self.statistic > self.config.threshold:
            self.detections += 1
            self.reset()
            return True
        return False
