"""The unit that moves through harstream: one device's chunk of consecutive sensor samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNLABELLED = -1
"""Label code of a sample without an annotation."""

RESTART_MS = 1000.0
"""how much later than its place in the count a record must start to be taken for a device's
new count (a restart), not for clock jitter"""


@dataclass(frozen=True, slots=True, eq=False)
class Record:
    """A chunk of ``n`` samples x ``C`` channels from one device.

    ``seq`` is the per-device sequence number of the first sample; the following samples are
    ``seq + 1, seq + 2, ...`` unless ``seqs`` gives them explicitly (strictly increasing, with
    ``seqs[0] == seq``; a jump is a gap the device reports). Sample ``i`` happened at
    ``t0_ms + (seq_i - seq) * 1000 / rate_hz``. ``labels`` holds one activity code per sample,
    :data:`UNLABELLED` (-1) where there is none. ``units`` is the wire code
    (:meth:`streams.units.Units.code`) of the units the device declares; a kind at 0 (all at 0
    by default) is not declared, and the receiver assumes its model's unit for it.

    >>> r = Record("dev-1", 10, 1_700_000_000_000, 50.0, np.zeros((4, 6), np.float32))
    >>> r.n, r.channels, r.last_seq
    (4, 6, 13)
    """

    device: str
    seq: int
    t0_ms: int
    rate_hz: float
    values: np.ndarray
    labels: np.ndarray | None = None
    seqs: np.ndarray | None = None
    units: int = 0

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.values.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels per sample."""
        return int(self.values.shape[1])

    @property
    def last_seq(self) -> int:
        """Sequence number of the last sample."""
        return int(self.seqs[-1]) if self.seqs is not None else self.seq + self.n - 1

    def counts_again(self, last_seq: int, last_ms: float) -> bool:
        """Whether this record begins a new count of its device (it restarted): its first
        sequence number is at or below ``last_seq``, the last one taken, yet it starts more
        than :data:`RESTART_MS` after ``last_ms``, that sample's event time (a redelivered
        record starts no later)."""
        return 0 <= self.seq <= last_seq and self.t0_ms > last_ms + RESTART_MS

    def sequence(self) -> np.ndarray:
        """Every sample's sequence number (int64)."""
        if self.seqs is not None:
            return self.seqs
        return np.arange(self.seq, self.seq + self.n, dtype=np.int64)

    def times_ms(self) -> np.ndarray:
        """Every sample's event time in milliseconds (float64)."""
        return self.t0_ms + (self.sequence() - self.seq) * (1000.0 / self.rate_hz)
