"""Liveness and readiness checks of a worker and of a trainer, for ``/healthz`` and ``/readyz``.

Each check reads attributes the loop sets on its own thread (no call into Kafka from the HTTP
threads), and answers with the named conditions it tested.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pipeline.observability.server import Checks, HttpConfig

if TYPE_CHECKING:
    from pipeline.trainer.service import Trainer
    from pipeline.worker.loop import Worker


def worker_checks(worker: Worker, config: HttpConfig) -> tuple[Checks, Checks]:
    """(health, ready): the loop turns; partitions assigned, a model loaded and caught up."""

    def health() -> dict[str, bool]:
        return {"loop_turning": time.monotonic() - worker.last_step_at < config.stall_s}

    def ready() -> dict[str, bool]:
        lag = worker.lag
        return {
            **health(),
            "partitions_assigned": bool(worker.assigned),
            "model_loaded": worker.stream_model is not None or worker.window_model is not None,
            "caught_up": lag is not None and sum(lag.values()) <= config.ready_max_lag,
        }

    return health, ready


def trainer_checks(trainer: Trainer, config: HttpConfig) -> tuple[Checks, Checks]:
    """(health, ready): the loop turns (or a retrain runs); partitions assigned, champion loaded."""

    def health() -> dict[str, bool]:
        idle = time.monotonic() - trainer.last_step_at
        return {"loop_turning": trainer.retraining or idle < config.stall_s}

    def ready() -> dict[str, bool]:
        return {
            **health(),
            "partitions_assigned": bool(trainer.assigned),
            "champion_loaded": trainer.champion is not None,
        }

    return health, ready
