"""The worker: poll, decode, order per device, step every device's state, emit, commit.

``loop`` (the :class:`Worker`), ``sequencer`` (order, dedupe, hold), ``state_store`` (a slot per
device: sequence numbers, ring buffers), ``activity`` (activity changes with hysteresis),
``emission`` (the output messages), ``hooks`` (what runs between batches, e.g. a hot swap).
"""

from pipeline.worker.loop import Worker, WorkerConfig, WorkerStats

__all__ = ["Worker", "WorkerConfig", "WorkerStats"]
