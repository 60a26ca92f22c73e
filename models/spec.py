"""What a model is: its architecture (the spec) and what it was fitted to (the metadata)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from models.exceptions import ModelFileError, SpecError
from models.frame import GravityFrame
from models.hmm import Grammar

Cell = Literal["rnn", "lstm", "gru"]
Architecture = Literal["recurrent", "birnn", "mlp", "cnn", "attention"]
Setup = Literal["window", "stream", "seq2seq"]
Task = Literal["classify", "reconstruct", "forecast"]
Frame = Literal["device", "gravity"]
FRAMES: tuple[str, ...] = ("device", "gravity")
CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")
ARCHITECTURES: tuple[str, ...] = ("recurrent", "birnn", "mlp", "cnn", "attention")
SETUPS: tuple[str, ...] = ("window", "stream", "seq2seq")
SEQ2SEQ_TASKS: tuple[str, ...] = ("reconstruct", "forecast")


@dataclass(frozen=True)
class ModelSpec:
    """The architecture of a model.

    ``setup="window"`` is many-to-one (one activity per window); ``setup="stream"`` is
    many-to-many (one activity per sample), unidirectional so that it can run statefully per
    device. ``architecture`` picks a recurrent stack of ``cell`` layers, a bidirectional one
    (windows only), a recurrent stack pooled by attention over time (windows only), or a
    memory-less baseline: an MLP over the flattened window or a 1-D CNN.
    ``next_step`` adds a self-supervised head that predicts the next (normalised) sample.
    ``frame="gravity"`` reads the sensors in the gravity frame (:mod:`models.frame`): inputs no
    rotation of the device changes, instead of its raw x/y/z axes.

    ``setup="seq2seq"`` is an unlabelled encoder-decoder (:mod:`models.seq2seq`) whose error is
    an anomaly score: ``task="reconstruct"`` regenerates the window from one fixed-length vector
    (``architecture="mlp"``: a memory-less autoencoder over the flattened window),
    ``task="forecast"`` predicts the next ``horizon`` samples, with ``attention`` from every
    decoder step to the encoder's states. Other setups classify (``task="classify"``).

    >>> ModelSpec(cell="gru", layers=2, hidden=32).name
    'window-gru-2x32'
    >>> ModelSpec(setup="seq2seq", task="forecast", attention=True, horizon=25).name
    'seq2seq-forecast-attention-lstm-1x64'
    >>> ModelSpec(setup="stream", layers=2, members=3).name
    'stream-lstm-2x64-ensemble3'
    """

    setup: Setup = "window"
    architecture: Architecture = "recurrent"
    cell: Cell = "lstm"
    layers: int = 1
    hidden: int = 64
    dropout: float = 0.0
    conv_filters: int = 0
    """recurrent models: a Conv1D front end of this many filters (0 = none)"""
    next_step: bool = False
    frame: Frame = "device"
    task: Task = "classify"
    attention: bool = False
    """seq2seq forecasters: dot-product (Luong) attention from each decoder step to the encoder"""
    horizon: int = 0
    """seq2seq forecasters: samples predicted after the window"""
    members: int = 1
    """an ensemble of this many models of this architecture, their class probabilities
    averaged (classifiers; :func:`models.training.train_ensemble` trains each on its own seed)"""

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise SpecError(f"frame must be one of {FRAMES}, not {self.frame!r}")
        if self.setup not in SETUPS:
            raise SpecError(f"setup must be one of {SETUPS}, not {self.setup!r}")
        if self.architecture not in ARCHITECTURES:
            raise SpecError(f"architecture must be one of {ARCHITECTURES}")
        if self.cell not in CELLS:
            raise SpecError(f"cell must be one of {CELLS}, not {self.cell!r}")
        if not 1 <= self.layers <= 3:
            raise SpecError("layers must be 1, 2 or 3")
        if self.hidden < 1 or not 0.0 <= self.dropout < 1.0 or self.conv_filters < 0:
            raise SpecError("hidden must be >= 1, dropout in [0, 1), conv_filters >= 0")
        if self.setup == "stream" and self.architecture != "recurrent":
            raise SpecError("a stream (many-to-many) model must be unidirectional recurrent")
        if self.setup == "stream" and self.conv_filters:
            raise SpecError(
                "a conv front end is for window models (a stream model steps per sample)"
            )
        if self.next_step and self.setup != "stream":
            raise SpecError("the next-step head belongs to stream (many-to-many) models")
        if self.architecture == "attention" and self.setup != "window":
            raise SpecError("architecture 'attention' pools a window (many-to-one) model")
        if self.members < 1 or (self.members > 1 and self.setup == "seq2seq"):
            raise SpecError("members must be >= 1, and 1 for a seq2seq model")
        if self.setup == "seq2seq":
            self._check_seq2seq()
        elif self.task != "classify" or self.attention or self.horizon:
            raise SpecError(
                "task, attention and horizon are seq2seq options (setup='seq2seq'); "
                f"a {self.setup} model classifies"
            )

    def _check_seq2seq(self) -> None:
        if self.task not in SEQ2SEQ_TASKS:
            raise SpecError(f"a seq2seq model's task must be one of {SEQ2SEQ_TASKS}, not "
                            f"{self.task!r}")  # fmt: skip
        memoryless = self.architecture == "mlp" and self.task == "reconstruct"
        layers_ok = self.architecture == "recurrent" or memoryless
        if not layers_ok or self.conv_filters or self.dropout:
            raise SpecError(
                "a seq2seq model is a recurrent encoder and decoder (architecture 'recurrent', "
                "or 'mlp' for a memory-less autoencoder; no conv front end, no dropout)"
            )
        if self.task == "forecast" and self.horizon < 1:
            raise SpecError("a seq2seq forecaster needs horizon >= 1 (samples to predict)")
        if self.task == "reconstruct" and (self.horizon or self.attention):
            raise SpecError(
                "horizon and attention are for seq2seq forecasters (task='forecast'); an "
                "autoencoder regenerates its window from one vector"
            )

    @property
    def name(self) -> str:
        """A short readable name, e.g. ``stream-lstm-2x64``."""
        kind = {
            "recurrent": self.cell,
            "birnn": f"bi{self.cell}",
            "attention": f"attention-{self.cell}",
        }.get(self.architecture, self.architecture)
        if self.setup == "seq2seq":
            layer = self.cell if self.architecture == "recurrent" else self.architecture
            kind = f"{self.task}-{'attention-' if self.attention else ''}{layer}"
        conv = f"-conv{self.conv_filters}" if self.conv_filters else ""
        frame = "-gravity" if self.frame == "gravity" else ""
        members = f"-ensemble{self.members}" if self.members > 1 else ""
        return f"{self.setup}-{kind}{conv}{frame}-{self.layers}x{self.hidden}{members}"


DEFAULT_UNITS = {"acceleration": "g", "angular_rate": "rad/s"}


@dataclass(frozen=True)
class ModelMeta:
    """What a trained model expects and where it came from; saved inside the model file.

    ``mean``/``std`` are the normalisation of each model input (a channel, or a gravity-frame
    feature, see :attr:`inputs`) fitted on the training data (the model applies it itself);
    ``window``/``stride`` say how a window model is fed (a stream model reads one sample at a
    time, ``window`` is then the length its state was trained over). A seq2seq model has no
    classes; its ``threshold`` is the anomaly score (:func:`models.seq2seq.anomaly_scores`) at
    the ``threshold_quantile`` of its training windows' scores: above it, a window is anomalous.
    """

    spec: ModelSpec
    channels: tuple[str, ...]
    classes: tuple[str, ...]
    rate_hz: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    window: int
    stride: int
    provenance: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_UNITS))
    """the channels' units by kind (``acceleration``: g | m/s2, ``angular_rate``: rad/s |
    deg/s; metadata of earlier versions has none: g and rad/s)"""
    threshold: float | None = None
    threshold_quantile: float | None = None
    grammar: Grammar | None = None
    """a stream model's HMM for causal decoding (:mod:`models.hmm`); older models have none"""

    def __post_init__(self) -> None:
        c = len(self.inputs)
        if len(self.mean) != c or len(self.std) != c:
            raise SpecError(f"mean/std need one value per model input ({c})")
        if min(self.std, default=1.0) <= 0:
            raise SpecError("std must be > 0 for every channel")
        if self.spec.setup == "seq2seq" and self.classes:
            raise SpecError("a seq2seq model has no classes (it is trained without labels)")
        if self.spec.setup != "seq2seq" and not self.classes:
            raise SpecError("a model needs at least one class")
        if (self.threshold is None) != (self.threshold_quantile is None):
            raise SpecError("threshold and threshold_quantile are given together or not at all")
        if self.threshold_quantile is not None and not 0.0 < self.threshold_quantile < 1.0:
            raise SpecError("threshold_quantile must be in (0, 1)")
        if self.window < 1 or self.stride < 1:
            raise SpecError("window and stride must be >= 1")
        if self.grammar is not None and len(self.grammar.prior) != len(self.classes):
            raise SpecError("the grammar needs one prior value per class")

    @property
    def frame(self) -> GravityFrame | None:
        """The gravity frame the model reads its channels in, if ``spec.frame == "gravity"``."""
        if self.spec.frame != "gravity":
            return None
        return GravityFrame.for_channels(self.channels, self.rate_hz)

    @property
    def span(self) -> int:
        """Samples of the windows a window or seq2seq model is fed: the ``window`` it reads,
        then the ``horizon`` samples a forecaster predicts (and is scored on)."""
        return self.window + self.spec.horizon

    @property
    def inputs(self) -> tuple[str, ...]:
        """What the model's normalisation and first layer see: the channels, or the gravity
        frame's features."""
        frame = self.frame
        return self.channels if frame is None else frame.names

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            raw = json.loads(text)
            raw["spec"] = ModelSpec(**raw["spec"])
            for key in ("channels", "classes", "mean", "std"):
                raw[key] = tuple(raw[key])
            if raw.get("grammar") is not None:
                raw["grammar"] = Grammar.from_dict(raw["grammar"])
            return cls(**raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"invalid model metadata: {exc}") from exc
