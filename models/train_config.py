"""How a model is trained: the one :class:`TrainConfig` (plain data, no Keras), shared by
``harstream train``, the trainer service's ``[trainer.train]`` section and the reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.exceptions import SpecError

RECIPES: dict[str, dict[str, float]] = {
    "window": {"epochs": 20, "patience": 20, "batch_size": 128, "max_minutes": 14.0,
               "dropout": 0.3, "train_stride": 16},
    "stream": {"epochs": 80, "patience": 80, "batch_size": 128, "max_minutes": 14.0,
               "dropout": 0.2, "average_epochs": 40},
    "seq2seq": {"epochs": 20, "patience": 5, "batch_size": 128, "max_minutes": 14.0,
                "dropout": 0.0},
}  # fmt: skip
"""the best measured recipe of each setup, the model report's (``docs/models.md``; window: UCI
HAR, stream: UCI HAPT, seq2seq: the anomaly detectors), which ``harstream train`` uses for every
one of these flags not given; ``train_stride``: window models train on windows taken every this
many samples; ``average_epochs``: stream models keep the mean of their last epochs' weights
(``harstream train`` caps it at half of a shorter ``--epochs``)"""


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults suit a laptop CPU."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    clipnorm: float | None = 1.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """cosine: decay the learning rate to 1 % of its start over ``epochs``"""
    patience: int = 6
    """epochs without a better validation accuracy before stopping (best weights kept; not with
    ``average_epochs``)"""
    average_epochs: int = 0
    """stream models: keep the mean of the weights after each of the last this many epochs
    (stochastic weight averaging over the end of the schedule, which then runs to its end: no
    early stopping) instead of the best validation epoch's (0)"""
    class_weights: bool = True
    validation_users: float = 0.2
    """fraction of the training users held out for early stopping (0 = none)"""
    seed: int = 0
    max_seconds: float | None = None
    """stop after the epoch during which this much time has passed"""
    tbptt_steps: int = 128
    """stream models: samples per truncated-BPTT chunk"""
    chunks_per_lane: int = 16
    """stream models: chunks the state is carried over before it is reset (1 = windows only);
    shorter recordings are padded at the end, the padding out of the loss"""
    lanes: int = 32
    """stream models: recording segments trained side by side (the batch; drawn again when
    there are fewer)"""
    next_step_weight: float = 0.1
    """stream models with a next-step head: weight of its (MSE) loss"""
    tune: Literal["all", "head"] = "all"
    """fine-tuning: ``head`` trains only the output layers, the recurrent ones stay frozen"""
    l2_sp: float = 0.0
    """fine-tuning: weight of an L2 penalty on the distance from the starting weights (L2-SP),
    so that the model forgets less of what it learnt from its earlier users"""
    rotate_deg: float = 0.0
    """x/y/z sensors turned by fresh random rotations of up to this many degrees every epoch
    (phones worn at other angles; 180 = any orientation, uniformly): window models also train on
    a turned copy of each window, stream models turn each segment by one rotation. Validation is
    on the held-out users' windows or recordings plus one turned copy of each (0 = off)"""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lanes < 1:
            raise SpecError("epochs, batch_size and lanes must be >= 1")
        if self.tbptt_steps < 1 or self.chunks_per_lane < 1:
            raise SpecError("tbptt_steps and chunks_per_lane must be >= 1")
        if not 0.0 <= self.validation_users < 1.0:
            raise SpecError("validation_users must be in [0, 1)")
        if self.tune not in ("all", "head") or self.l2_sp < 0.0:
            raise SpecError("tune must be all or head, and l2_sp >= 0")
        if not 0.0 <= self.rotate_deg <= 180.0:
            raise SpecError("rotate_deg must be in [0, 180]")
        if self.average_epochs < 0:
            raise SpecError("average_epochs must be >= 0")
