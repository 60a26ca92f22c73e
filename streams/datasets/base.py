"""In-memory form every dataset reader returns: continuous per-device streams."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from streams.exceptions import DatasetError
from streams.units import Units

if TYPE_CHECKING:
    from streams.datasets.resample import ResampleReport


@dataclass(frozen=True, eq=False)
class DeviceStream:
    """One device's continuous recording.

    ``values`` is ``(n, C)`` float32; ``labels`` is ``(n,)`` int16 activity codes (-1 where the
    sample is not annotated). ``seq`` gives each sample's sequence number (int64, strictly
    increasing; a jump is a gap); ``None`` means ``0 .. n-1``. Sample ``i`` happened at
    ``t0_ms + seq_i * 1000 / rate_hz``. ``user`` is the person who wore the device, for splits.
    """

    device: str
    values: np.ndarray
    labels: np.ndarray
    rate_hz: float
    t0_ms: int = 0
    user: int | None = None
    seq: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.dtype != np.float32:
            raise DatasetError(f"{self.device}: values must be (n, C) float32")
        if self.labels.shape != (self.values.shape[0],) or self.labels.dtype != np.int16:
            raise DatasetError(f"{self.device}: labels must be (n,) int16")
        if self.seq is not None and (
            self.seq.shape != self.labels.shape or np.any(np.diff(self.seq) <= 0)
        ):
            raise DatasetError(f"{self.device}: seq must be (n,) and strictly increasing")

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def sequence(self) -> np.ndarray:
        """Every sample's sequence number (int64)."""
        return self.seq if self.seq is not None else np.arange(self.n, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class StreamDataset:
    """Named channels and activities plus the streams that use them.

    ``units`` are those of the values; ``notes`` say what the reader converted or resampled,
    ``resampling`` how, device by device.
    """

    name: str
    channels: tuple[str, ...]
    activities: tuple[str, ...]
    rate_hz: float
    streams: tuple[DeviceStream, ...] = field(default_factory=tuple)
    units: Units = Units()
    notes: tuple[str, ...] = ()
    resampling: ResampleReport | None = None

    def __post_init__(self) -> None:
        for s in self.streams:
            if s.values.shape[1] != len(self.channels):
                raise DatasetError(
                    f"{s.device}: {s.values.shape[1]} channels, dataset has {len(self.channels)}"
                )

    @property
    def n_samples(self) -> int:
        return sum(s.n for s in self.streams)

    @property
    def users(self) -> tuple[int, ...]:
        return tuple(sorted({s.user for s in self.streams if s.user is not None}))

    def select_users(self, users: Iterable[int]) -> StreamDataset:
        """The streams worn by ``users`` (split by user, never by time inside a stream)."""
        wanted = set(users)
        return self.with_streams(tuple(s for s in self.streams if s.user in wanted))

    def with_streams(self, streams: tuple[DeviceStream, ...]) -> StreamDataset:
        """This dataset with only ``streams``."""
        return replace(self, streams=streams)
