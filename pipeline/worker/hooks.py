"""What runs between a worker's batches, seen from the worker: a narrow protocol, so that the
worker does not depend on the hot swap that implements it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from pipeline.serving import ServingModel
    from pipeline.worker.state_store import StateStore


@dataclass
class SwapRecord:
    """One swap as the worker saw it (wall-clock times in seconds)."""

    version: str
    previous: str
    batch: int
    """the first batch the new version served"""
    pauses_ms: list[float] = field(default_factory=list)
    """what this swap cost each batch it touched: ring copies, then sync slices plus the new
    model's share of the batch"""
    rounds: int = 0
    synced_by_worker: int = 0
    """devices the new model was not in step with after the watcher's last round"""
    sync_batches: int = 0
    """batches the worker took to sync those devices itself"""
    primed_devices: int = 0
    noticed_at: float = 0.0
    primed_at: float = 0.0
    """when the watcher was done (loaded, warmed, primed in rounds)"""
    swapped_at: float = 0.0
    first_prediction_at: float | None = None


class BatchHook(Protocol):
    """Called by the worker between batches and as it advances devices (a hot swap is one)."""

    @property
    def batch_limit(self) -> int | None:
        """A cap on the worker's batch size for now, or None."""

    def start(self, models: Sequence[ServingModel | None], store: StateStore) -> BatchHook:
        """Begin with the worker's served models (stream, window) and its state store."""

    def at_boundary(
        self, store: StateStore, batch: int, swap_in: Callable[[ServingModel], str]
    ) -> SwapRecord | None:
        """Between two batches; a record when ``swap_in`` was called with a new model."""

    def follow(self, store: StateStore, slots: np.ndarray, counts, samples: np.ndarray) -> None:
        """The worker advanced ``slots`` by ``counts`` of ``samples``."""

    def note_reset(self, slots: np.ndarray) -> None:
        """The worker reset ``slots`` (gap, eviction, new device)."""

    def close(self) -> None:
        """Stop (the worker is closing)."""
