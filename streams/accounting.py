"""Per-device accounting of samples: what was received, each sample counted once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streams.checksum import sample_checksum
from streams.record import Record


@dataclass(frozen=True)
class DeviceTally:
    """How many distinct samples of one device, and their order-independent checksum."""

    samples: int
    checksum: int


class SampleLedger:
    """Collects received records and tallies each device's distinct samples.

    A sample is identified by (device, sequence number); duplicates are counted once, and a
    duplicate carrying different values is reported as a conflict.

    >>> ledger = SampleLedger()
    >>> r = Record("d", 0, 0, 50.0, np.ones((3, 2), np.float32))
    >>> ledger.add(r); ledger.add(r)
    >>> ledger.tallies()["d"].samples, ledger.records
    (3, 2)
    """

    def __init__(self) -> None:
        self._seqs: dict[str, list[np.ndarray]] = {}
        self._values: dict[str, list[np.ndarray]] = {}
        self.records = 0

    def add(self, record: Record) -> None:
        self._seqs.setdefault(record.device, []).append(record.sequence())
        self._values.setdefault(record.device, []).append(np.asarray(record.values))
        self.records += 1

    def _distinct(self, device: str) -> tuple[np.ndarray, np.ndarray, int]:
        seqs = np.concatenate(self._seqs[device])
        values = np.concatenate(self._values[device])
        order = np.argsort(seqs, kind="stable")
        seqs, values = seqs[order], values[order]
        first = np.append(True, seqs[1:] != seqs[:-1])
        group = np.cumsum(first) - 1
        conflicts = int(np.any(values != values[first][group], axis=1).sum())
        return seqs[first], values[first], conflicts

    def tallies(self) -> dict[str, DeviceTally]:
        out = {}
        for device in self._seqs:
            seqs, values, _ = self._distinct(device)
            out[device] = DeviceTally(len(seqs), sample_checksum(seqs, values))
        return out

    def conflicts(self) -> int:
        """Samples received more than once with different values (should be 0)."""
        return sum(self._distinct(d)[2] for d in self._seqs)

    @property
    def samples(self) -> int:
        """Samples received, duplicates included."""
        return sum(len(s) for lst in self._seqs.values() for s in lst)


def compare_tallies(
    expected: dict[str, DeviceTally], received: dict[str, DeviceTally]
) -> list[str]:
    """One line per device whose received samples differ from the expected ones (empty: all ok)."""
    problems = []
    for device in sorted(expected.keys() | received.keys()):
        want, got = expected.get(device), received.get(device)
        if want is None or got is None or want != got:
            problems.append(f"{device}: expected {want}, received {got}")
    return problems
