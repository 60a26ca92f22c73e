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


@dataclass(frozen=True, eq=False)
class RecordBlock:
    """Records of one sample count as arrays, row ``j`` being a :class:`Record` without explicit
    sequence numbers: what a bulk decode gives, so that the common case needs no Python object
    per record. ``labels`` is -1 where a record has none (``labelled[j]`` says which had them).

    >>> block = RecordBlock(["a", "b"], np.array([0, 7]), np.array([0, 500]),
    ...                     np.array([50.0, 100.0]), np.zeros(2, np.int64),
    ...                     np.zeros((2, 3, 1), np.float32))
    >>> block.sequences()[1].tolist(), block.times_ms()[1].tolist()
    ([7, 8, 9], [500.0, 510.0, 520.0])
    >>> block.record(1).last_seq
    9
    """

    devices: list[str]
    seq: np.ndarray
    t0_ms: np.ndarray
    rate_hz: np.ndarray
    units: np.ndarray
    values: np.ndarray
    """(M, n, C) float32"""
    labels: np.ndarray | None = None
    """(M, n) int16, or None when no record has labels"""
    labelled: np.ndarray | None = None
    """(M,) bool: the rows whose record carried labels (None: all of them, if ``labels``)"""

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def n(self) -> int:
        """Samples per record."""
        return int(self.values.shape[1])

    def sequences(self) -> np.ndarray:
        """Every sample's sequence number (M, n) int64."""
        return self.seq[:, None] + np.arange(self.n, dtype=np.int64)

    def times_ms(self) -> np.ndarray:
        """Every sample's event time in ms (M, n) float64, as :meth:`Record.times_ms`."""
        return self.t0_ms[:, None] + np.arange(self.n) * (1000.0 / self.rate_hz[:, None])

    def record(self, j: int) -> Record:
        """Row ``j`` as a :class:`Record`."""
        has = self.labels is not None and (self.labelled is None or bool(self.labelled[j]))
        return Record(self.devices[j], int(self.seq[j]), int(self.t0_ms[j]),
                      float(self.rate_hz[j]), self.values[j],
                      self.labels[j] if has else None, units=int(self.units[j]))  # fmt: skip

    def take(self, rows: np.ndarray) -> RecordBlock:
        """The block of ``rows`` (an index or boolean mask)."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        picked = rows.tolist()
        return RecordBlock(
            [self.devices[j] for j in picked], self.seq[rows], self.t0_ms[rows],
            self.rate_hz[rows], self.units[rows], self.values[rows],
            None if self.labels is None else self.labels[rows],
            None if self.labelled is None else self.labelled[rows],
        )  # fmt: skip

    @staticmethod
    def concat(blocks: list[RecordBlock]) -> RecordBlock:
        """One block of ``blocks`` (of one sample count), row after row."""
        labelled = [
            np.full(len(b), b.labels is not None) if b.labelled is None else b.labelled
            for b in blocks
        ]
        labels = None
        if any(b.labels is not None for b in blocks):
            labels = np.concatenate([
                np.full((len(b), b.n), UNLABELLED, np.int16) if b.labels is None else b.labels
                for b in blocks
            ])  # fmt: skip
        return RecordBlock(
            [d for b in blocks for d in b.devices],
            *(np.concatenate([getattr(b, key) for b in blocks])
              for key in ("seq", "t0_ms", "rate_hz", "units", "values")),
            labels, None if labels is None else np.concatenate(labelled),
        )  # fmt: skip
