"""The trainer service: learns from labelled samples as they arrive, retrains, gates, promotes.

One loop, in a process of its own so that workers never wait for it::

    poll sensor records (labels inside) and label ranges (``sensor.labels``)
    -> in the champion's units and at its rate (devices at other rates resampled)
    -> LabelJoiner: labelled windows per device
    -> the champion scores each new window: its error feeds a Page-Hinkley drift detector
    -> TrainingBuffer (bounded, balanced across classes and devices, persisted)
    -> on a trigger (interval, N new windows, drift): train a candidate from the buffer's
       training devices (fine-tune the champion, or from scratch)
    -> gate against the champion on the held-out devices -> register; promote and announce
       on ``har.control``, or mark rejected with the reason
    -> the same for the anomaly detector (``anomaly_name``), if there is one: trained on the
       buffer's windows (labels ignored), gated by its mean error on the held-out devices

Source offsets are committed only after the buffer holding their windows was saved, so a
restarted trainer resumes with its buffer instead of from zero.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.registry import Registry, version_label
from models.train_config import TrainConfig
from pipeline.exceptions import ConfigError, PipelineError
from pipeline.swap.control import CONTROL_TOPIC, announce
from pipeline.trainer.buffer import BufferConfig, TrainingBuffer, Windows, stitched
from pipeline.trainer.drift import PageHinkley, PageHinkleyConfig
from pipeline.trainer.gate import (
    DetectorVerdict,
    GateConfig,
    Verdict,
    judge,
    judge_detector,
    scores,
    window_examples,
)
from pipeline.trainer.labelling import JoinConfig, LabelError, LabelJoiner, parse_label_message
from pipeline.worker.resampler import RecordResampler
from streams.codecs import Codec, CodecConfig, make_codec
from streams.exceptions import DecodeError
from streams.protocols import Sink, Source, TopicPartition
from streams.units import ToUnits, Units

if TYPE_CHECKING:
    import keras

    from models.hmm import Grammar
    from models.spec import ModelMeta
    from pipeline.observability.metrics import TrainerMetrics

log = logging.getLogger(__name__)
Mode = Literal["finetune", "scratch"]
BUFFER_FILE = "buffer.npz"
_CHUNK = 64
"""messages between window collections: a fast replay brings a device thousands of samples per
poll, more than the joiner keeps waiting (``JoinConfig.max_pending``)"""


TRAINING = TrainConfig(
    epochs=5, learning_rate=1e-3, batch_size=64, clipnorm=1.0, lr_schedule="constant",
    validation_users=0.0, max_seconds=600.0, tbptt_steps=51, lanes=16, tune="head",
)  # fmt: skip
"""The trainer's training defaults: short, constant-rate fine-tuning of the champion's head,
bounded to ten minutes (the gate's held-out devices, not validation users, judge the result)."""


@dataclass(frozen=True)
class TrainerConfig:
    """What the trainer learns from, when it retrains, and how.

    Triggers (any of them): ``interval_s`` since the last retrain, ``every_windows`` new
    labelled windows, or drift in the champion's online error (``drift``). No retrain starts
    before the buffer holds ``min_windows`` training windows and the gate's held-out minimum.
    ``mode``: ``finetune`` continues from the champion's weights (its normalisation kept);
    ``scratch`` trains the champion's architecture anew. ``train.tune``: ``head`` fine-tunes only
    the output layers, the recurrent ones frozen; ``train.l2_sp`` (L2-SP) pulls the weights
    towards the champion's: ways to forget less of the users the champion learnt from (whom the
    gate's held-out devices stand for) while learning from the buffer's. The defaults (``head``
    at 1e-3) were the best of 14 variants on real data (``python -m pipeline.bench.retrain``, HAPT,
    6 seeds): +1.8 points on the new users' later recordings, -0.9 on held-out users, where
    tuning every layer at 3e-4 gave +2.2 and -4.0. ``state_dir`` keeps the buffer.
    ``anomaly_name``: the registry name of a seq2seq anomaly detector to retrain beside the
    classifier on every trigger (same ``mode`` and ``train``; ``tune="head"`` trains its output
    layer), gated by its mean held-out error (``gate.error_margin``). Its champion must read the
    classifier's channels at its rate and in its units, in windows no longer than the buffer's.
    """

    name: str = "har"
    anomaly_name: str | None = None
    registry: str | None = None
    """the registry root (the command opens it; a Trainer is given the Registry itself)"""
    group_id: str = "harstream-trainer"
    input_topic: str = "sensor.raw"
    labels_topic: str | None = "sensor.labels"
    control_topic: str = CONTROL_TOPIC
    mode: Mode = "finetune"
    interval_s: float | None = 3600.0
    every_windows: int | None = 2000
    drift: bool = True
    min_windows: int = 100
    state_dir: str | None = None
    save_every_s: float = 60.0
    max_records: int = 5000
    poll_timeout_s: float = 0.2
    train: TrainConfig = field(default_factory=lambda: TRAINING)
    """how candidates train (``[trainer.train]``); ``max_seconds`` bounds one retrain"""
    buffer: BufferConfig = field(default_factory=BufferConfig)
    join: JoinConfig = field(default_factory=JoinConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    page_hinkley: PageHinkleyConfig = field(default_factory=PageHinkleyConfig)

    def __post_init__(self) -> None:
        if self.mode not in ("finetune", "scratch"):
            raise ConfigError(f"trainer mode must be finetune or scratch, not {self.mode!r}")
        if self.join.window != self.buffer.window:
            raise ConfigError("the joiner's and the buffer's window lengths must be equal")
        if self.min_windows < 1:
            raise ConfigError("min_windows must be >= 1")
        if self.train.max_seconds is None:
            raise ConfigError("[trainer.train] max_seconds must be set: a retrain is bounded")
        if self.anomaly_name == self.name:
            raise ConfigError(f"anomaly_name must name another model than name ({self.name!r})")


@dataclass
class DetectorRetrain:
    """The anomaly detector's part of a retrain: what it produced and what the gate said."""

    name: str
    version: int
    verdict: DetectorVerdict
    train_windows: int
    seconds: float


@dataclass
class Retrain:
    """One retrain: why it ran, what it produced and what the gate said."""

    trigger: str
    version: int | None
    verdict: Verdict
    train_windows: int
    seconds: float
    detector: DetectorRetrain | None = None
    """the anomaly detector's retrain (``anomaly_name`` set)"""

    @property
    def kind(self) -> str:
        """The trigger as a short label: ``drift``, ``windows``, ``interval`` or ``manual``."""
        if self.trigger == "drift":
            return "drift"
        return next((k for k in ("windows", "interval") if self.trigger.endswith(k)), "manual")


@dataclass
class TrainerStats:
    messages: int = 0
    records: int = 0
    label_ranges: int = 0
    rejected: Counter = field(default_factory=Counter)
    windows: int = 0
    online_windows: int = 0
    online_correct: float = 0.0
    drift_detections: int = 0
    retrains: list[Retrain] = field(default_factory=list)

    @property
    def promotions(self) -> int:
        return sum(r.verdict.promote for r in self.retrains)

    @property
    def detector_promotions(self) -> int:
        return sum(r.detector is not None and r.detector.verdict.promote for r in self.retrains)


class Trainer:
    """Keeps the champion of ``config.name`` in ``registry`` learning from labelled streams
    (and that of ``config.anomaly_name`` from the same windows)."""

    def __init__(
        self,
        source: Source,
        registry: Registry,
        config: TrainerConfig | None = None,
        *,
        control: Sink | None = None,
        codec: Codec | None = None,
        clock=time.monotonic,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.config = cfg = config or TrainerConfig()
        self.metrics = metrics
        self.source, self.registry, self.control = source, registry, control
        self._clock = clock
        self._load_champion()
        self.detector = self.detector_meta = self.detector_version = None
        if cfg.anomaly_name is not None:
            self._load_detector()
        channels = len(self.meta.channels)
        self.codec = codec or make_codec("auto", CodecConfig(channels=channels))
        self._in_units = ToUnits(Units(**self.meta.units), self.meta.channels)
        self._at_rate = RecordResampler(self.meta.rate_hz, channels)
        """records of devices at other rates, at the champion's (as the workers see them)"""
        self.joiner = LabelJoiner(channels, cfg.join)
        self.buffer = self._open_buffer(channels)
        self.drift = PageHinkley(cfg.page_hinkley)
        self.stats = TrainerStats()
        self._since_retrain = 0
        self._last_retrain = self._last_save = clock()
        self._positions: dict[TopicPartition, int] = {}
        self._stop = False
        self._drifted = False
        self.last_step_at = time.monotonic()
        """when the loop last turned (liveness)"""
        self.retraining = False
        self.assigned: set[TopicPartition] = set()
        self._counted_records = 0
        if metrics is not None:
            metrics.champion.info({"version": version_label(self.champion_version)})

    # -- champion and buffer ------------------------------------------------------------------

    def _load_champion(self) -> None:
        name = self.config.name
        champion, _ = self.registry.champion_stamp(name)
        if champion is None:
            raise ConfigError(
                f"{name} has no champion in {self.registry.root}: register and promote a first "
                f"model (harstream train --registry {self.registry.root} --name {name} --promote)"
            )
        self.champion_version = champion
        self.champion, self.meta = self.registry.load(name, champion)
        if self.meta.spec.setup == "window" and self.meta.window > self.config.buffer.window:
            raise ConfigError(f"{name} reads {self.meta.window}-sample windows; the buffer keeps "
                              f"{self.config.buffer.window}-sample ones")  # fmt: skip

    def _load_detector(self) -> None:
        """The champion of ``anomaly_name``, checked against the classifier's and the buffer."""
        from models.seq2seq import span  # Keras: not at start-up

        name, root = self.config.anomaly_name, self.registry.root
        version, _ = self.registry.champion_stamp(name)
        if version is None:
            raise ConfigError(f"anomaly detector {name} has no champion in {root}: register and "
                              f"promote a seq2seq model (harstream train --setup seq2seq "
                              f"--registry {root} --name {name} --promote)")  # fmt: skip
        meta, classifier = self.registry.get(name, version).meta, self.meta
        label = f"{name}@{version_label(version)}"
        if meta.spec.setup != "seq2seq":
            raise ConfigError(f"anomaly detector {label} is a {meta.spec.name}, not a seq2seq "
                              f"model")  # fmt: skip
        for what, mine, theirs in (("channels", meta.channels, classifier.channels),
                                   ("rate_hz", meta.rate_hz, classifier.rate_hz),
                                   ("units", meta.units, classifier.units)):  # fmt: skip
            if mine != theirs:
                raise ConfigError(f"anomaly detector {label} has {what} {mine}, the classifier "
                                  f"{self.config.name} {theirs}: they must be equal")  # fmt: skip
        if span(meta) > self.config.buffer.window:
            raise ConfigError(f"anomaly detector {label} scores {span(meta)}-sample windows; the "
                              f"buffer keeps {self.config.buffer.window}-sample ones")  # fmt: skip
        self.detector, self.detector_meta = self.registry.load(name, version)
        self.detector_version = version

    def _open_buffer(self, channels: int) -> TrainingBuffer:
        path = self._buffer_path()
        if path is not None and path.is_file():
            buffer = TrainingBuffer.load(path, channels, self.config.buffer)
            log.info(
                "resumed a buffer of %d windows from %s",
                len(buffer),
                path,
                extra={"windows": len(buffer), "path": str(path)},
            )
            return buffer
        return TrainingBuffer(channels, self.config.buffer)

    def _buffer_path(self) -> Path | None:
        return Path(self.config.state_dir) / BUFFER_FILE if self.config.state_dir else None

    def save(self) -> None:
        """Persist the buffer, then commit the offsets whose windows it holds."""
        path = self._buffer_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.buffer.save(path)
        if self._positions:
            self.source.commit(dict(self._positions))
        self._last_save = self._clock()

    # -- the loop -----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop = True

    @property
    def stopping(self) -> bool:
        return self._stop

    def run(self, count: int | None = None, timeout: float | None = None) -> TrainerStats:
        """Consume and retrain until ``count`` messages, ``timeout`` s without any, or stop."""
        idle_since = self._clock()
        while not self._stop and (count is None or self.stats.messages < count):
            if self.step():
                idle_since = self._clock()
            elif timeout is not None and self._clock() - idle_since > timeout:
                break
        self.save()
        return self.stats

    def step(self) -> int:
        """Poll one batch, add its labelled windows, retrain if a trigger fired."""
        cfg = self.config
        messages = self.source.poll(cfg.max_records, cfg.poll_timeout_s)
        for start in range(0, len(messages), _CHUNK):
            for msg in messages[start : start + _CHUNK]:
                self._take(msg)
                self._positions[msg.tp] = max(self._positions.get(msg.tp, 0), msg.offset + 1)
            self._collect()  # often enough that no device's pending samples overflow
        self.stats.messages += len(messages)
        trigger = self._trigger()
        if trigger is not None:
            self.retrain(trigger)
        if self._clock() - self._last_save > cfg.save_every_s:
            self.save()
        self.last_step_at = time.monotonic()
        self.assigned = self.source.assignment()
        if self.metrics is not None:
            self._report()
        return len(messages)

    def _report(self) -> None:
        s = self.stats
        online = s.online_correct / s.online_windows if s.online_windows else None
        self.metrics.progress(s.records - self._counted_records, len(self.buffer), online)
        self._counted_records = s.records

    def _collect(self) -> None:
        devices, values, labels = self.joiner.ready()
        if len(devices):
            self._score_online(devices, values, labels)
            kept = self.buffer.add(devices, values, labels)
            self.stats.windows += kept
            self._since_retrain += kept

    def _take(self, msg) -> None:
        if msg.topic == self.config.labels_topic:
            try:
                self.joiner.add_labels(parse_label_message(msg.key, msg.value, self.meta.classes))
                self.stats.label_ranges += 1
            except LabelError as exc:
                self.stats.rejected[f"labels: {exc}"[:80]] += 1
            return
        try:
            record = self.codec.decode(msg.value)
        except DecodeError as err:
            self.stats.rejected[err.reason] += 1
            return
        if not self._at_rate.resampler.supports(record.rate_hz):
            self.stats.rejected["rate_unsupported"] += 1
            return
        self.stats.records += 1
        record = self._at_rate(self._in_units(record))
        if record is not None:
            self.joiner.add_record(record)

    def _score_online(self, devices, values: np.ndarray, labels: np.ndarray) -> None:
        """The champion's accuracy on each new window feeds the drift detector."""
        hits, scored, _ = scores(self.champion, self.meta, Windows(tuple(devices), values, labels))
        for accuracy in (hits[scored > 0] / scored[scored > 0]).tolist():
            self.stats.online_windows += 1
            self.stats.online_correct += accuracy
            if self.config.drift and self.drift.update(1.0 - accuracy):
                self.stats.drift_detections += 1
                self._drifted = True
                if self.metrics is not None:
                    self.metrics.drift.inc()

    def _trigger(self) -> str | None:
        cfg = self.config
        train = self.buffer.count(holdout=False)
        held = self.buffer.count(holdout=True)
        if train < cfg.min_windows or held < cfg.gate.min_holdout_windows:
            return None
        if self._drifted:
            return "drift"
        if cfg.every_windows is not None and self._since_retrain >= cfg.every_windows:
            return f"{self._since_retrain} new windows"
        if cfg.interval_s is not None and self._clock() - self._last_retrain >= cfg.interval_s:
            return f"{cfg.interval_s:g} s interval"  # kinds: see Retrain.kind
        return None

    # -- retraining ---------------------------------------------------------------------------

    def retrain(self, trigger: str = "manual") -> Retrain:
        """Train a candidate on the buffer, gate it, register it, promote or reject it; then the
        same for the anomaly detector, if there is one."""
        cfg = self.config
        self._refresh_champion()
        started = time.perf_counter()
        self.retraining = True
        train, holdout = self.buffer.windows(holdout=False), self.buffer.windows(holdout=True)
        self._log_start(cfg.name, trigger, train, holdout)
        model, meta = train_candidate(self.champion, self.meta, train, cfg)
        verdict = judge(model, self.champion, meta, holdout, cfg.gate, stride=cfg.join.stride)
        version = self._register(cfg.name, self.champion_version, model, meta, verdict, trigger,
                                 train)  # fmt: skip
        result = Retrain(trigger, version, verdict, len(train.devices),
                         time.perf_counter() - started)  # fmt: skip
        self._since_retrain, self._last_retrain, self._drifted = 0, self._clock(), False
        if verdict.promote and version is not None:
            self.champion, self.meta, self.champion_version = model, meta, version
            self.drift.reset()
        if self.metrics is not None:
            self.metrics.retrained(result.kind, result.seconds, verdict)
            self.metrics.champion.info({"version": version_label(self.champion_version)})
        self._log_outcome(cfg.name, version, verdict, result.seconds,
                          candidate_accuracy=verdict.candidate_accuracy,
                          champion_accuracy=verdict.champion_accuracy)  # fmt: skip
        if cfg.anomaly_name is not None:
            result.detector = self._retrain_detector(trigger, train, holdout)
        self.stats.retrains.append(result)
        self.retraining = False
        self.save()
        return result

    def _retrain_detector(self, trigger: str, train: Windows, holdout: Windows) -> DetectorRetrain:
        """The anomaly detector's candidate: trained on ``train``'s values, gated by its mean
        error on ``holdout``, registered, promoted and announced or rejected."""
        cfg, name = self.config, self.config.anomaly_name
        if self.registry.champion_stamp(name)[0] != self.detector_version:
            self._load_detector()  # promoted or rolled back meanwhile: train from the current one
        started = time.perf_counter()
        self._log_start(name, trigger, train, holdout)
        model, meta = train_detector(self.detector, self.detector_meta, train, cfg)
        verdict = judge_detector(model, meta, self.detector, self.detector_meta, holdout,
                                 cfg.gate, stride=cfg.join.stride)  # fmt: skip
        version = self._register(name, self.detector_version, model, meta, verdict, trigger,
                                 train)  # fmt: skip
        result = DetectorRetrain(name, version, verdict, len(train.devices),
                                 time.perf_counter() - started)  # fmt: skip
        if verdict.promote:
            self.detector, self.detector_meta, self.detector_version = model, meta, version
        if self.metrics is not None:
            self.metrics.detector_retrained(verdict)
        self._log_outcome(name, version, verdict, result.seconds,
                          candidate_error=verdict.candidate_error,
                          champion_error=verdict.champion_error)  # fmt: skip
        return result

    @staticmethod
    def _log_start(name: str, trigger: str, train: Windows, holdout: Windows) -> None:
        log.info("retraining %s (%s) on %d windows, gate on %d held-out windows", name, trigger,
                 len(train.devices), len(holdout.devices),
                 extra={"model": name, "trigger": trigger, "train_windows": len(train.devices),
                        "holdout_windows": len(holdout.devices)})  # fmt: skip

    @staticmethod
    def _log_outcome(name: str, version: int, verdict: Verdict | DetectorVerdict,
                     seconds: float, **compared: float) -> None:  # fmt: skip
        label = version_label(version)
        outcome = "promoted" if verdict.promote else "rejected"
        log.info("%s %s %s: %s (%.1f s)", name, label, outcome, verdict.reason, seconds,
                 extra={"model": name, "version": f"{name}@{label}", "outcome": outcome,
                        "reason": verdict.code, **compared,
                        "seconds": round(seconds, 3)})  # fmt: skip

    def _refresh_champion(self) -> None:
        """Someone may have promoted or rolled back meanwhile: train from the current one."""
        if self.registry.champion_stamp(self.config.name)[0] != self.champion_version:
            self._load_champion()

    def _register(self, name: str, parent: int, model, meta, verdict: Verdict | DetectorVerdict,
                  trigger: str, train: Windows) -> int:  # fmt: skip
        """Register a candidate of ``name``; promote and announce it, or reject it."""
        from models.io import save_model  # Keras: not at start-up

        cfg = self.config
        metrics = {"gate": verdict.to_dict(), "trigger": trigger, "mode": cfg.mode,
                   "train_windows": len(train.devices),
                   "train_devices": len(set(train.devices))}  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = save_model(model, meta, Path(tmp) / "candidate.keras")
            registered = self.registry.register(
                name, path, metrics, parent=parent,
                training_data=f"trainer buffer: {len(train.devices)} windows of "
                f"{len(set(train.devices))} devices from {cfg.input_topic}",
                notes=f"{cfg.mode} ({trigger})",
            )  # fmt: skip
        if verdict.promote:
            self.registry.promote(name, registered.version)
            if self.control is not None:
                announce(self.control, name, registered.version, topic=cfg.control_topic)
        else:
            self.registry.reject(name, registered.version, verdict.reason)
        return registered.version

    def close(self) -> None:
        self.save()
        self.source.close()
        if self.control is not None:
            self.control.close()


STREAM_CHUNKS = 16
"""truncated-BPTT chunks a stream candidate's state is carried over (as the champion's was)"""


def train_candidate(
    champion: keras.Model, meta: ModelMeta, train: Windows, config: TrainerConfig
) -> tuple[keras.Model, ModelMeta]:
    """A candidate of the champion's architecture trained on ``train`` (fine-tuned or anew).

    Stream models train by truncated BPTT over each device's windows joined in time order
    (:func:`stitched`), the state carried for up to ``STREAM_CHUNKS`` chunks.
    """
    from models.training import train_stream_model, train_window_model  # Keras: not at start-up

    start = champion if config.mode == "finetune" else None
    common = dict(channels=meta.channels, classes=meta.classes, rate_hz=meta.rate_hz,
                  start=start, provenance={**meta.provenance, "trained_by": "harstream trainer",
                                           "mode": config.mode})  # fmt: skip
    if meta.spec.setup == "stream":
        recordings, devices = stitched(train, config.join.stride)
        shortest = min(len(v) for v, _ in recordings)
        k = min(config.train.tbptt_steps, shortest - 1)
        chunks = max(1, min(STREAM_CHUNKS, (shortest - 1) // k))
        span = k * chunks
        lanes = sum(max(int(len(v) > span), (len(v) - 1) // span - 1) for v, _ in recordings)
    else:
        k = min(config.train.tbptt_steps, train.values.shape[1] - 1)
        chunks, lanes = max(1, (train.values.shape[1] - 1) // k), len(train.devices)
    train_config = replace(config.train, tbptt_steps=k, chunks_per_lane=chunks,
                           lanes=max(1, min(config.train.lanes, lanes)))  # fmt: skip
    if meta.spec.setup == "stream":
        result = train_stream_model(meta.spec, recordings, list(range(len(devices))),
                                    config=train_config, **common)  # fmt: skip
    else:
        ids = {d: i for i, d in enumerate(sorted(set(train.devices)))}
        users = np.array([ids[d] for d in train.devices], dtype=np.int64)
        X, y = window_examples(meta, train)
        keep = train.labels[:, -1] >= 0
        if len(X) == 0:
            raise PipelineError("no training window has a labelled last sample")
        result = train_window_model(meta.spec, X, y, users[keep], stride=meta.stride,
                                    config=train_config, **common)  # fmt: skip
    return result.model, replace(
        result.meta,
        units=dict(meta.units),  # the buffer's units
        grammar=_grammar(result.meta.grammar, meta.grammar),
    )


def _grammar(fitted: Grammar | None, champion: Grammar | None) -> Grammar | None:
    """The candidate's grammar: transitions from its buffer, but with no validation users to
    judge decoding on, the champion's choices (temperature, on or off, and the fixed-lag
    smoother's temperature per delay) carry over."""
    if fitted is None or champion is None or not np.isnan(fitted.validation[0]):
        return fitted
    return replace(fitted, temperature=champion.temperature, enabled=champion.enabled,
                   lags=champion.lags)  # fmt: skip


def train_detector(
    champion: keras.Model, meta: ModelMeta, train: Windows, config: TrainerConfig
) -> tuple[keras.Model, ModelMeta]:
    """An anomaly detector of the champion's architecture trained on ``train``'s values, each
    device's windows joined in time order (:func:`stitched`) and cut as the champion was
    (``meta.window`` every ``meta.stride`` samples), fine-tuned or anew."""
    from models.training import train_seq2seq_model  # Keras: not at start-up

    recordings, devices = stitched(train, config.join.stride)
    result = train_seq2seq_model(
        meta.spec, recordings, list(range(len(devices))), channels=meta.channels,
        rate_hz=meta.rate_hz, window=meta.window, stride=meta.stride,
        config=replace(config.train, rotate_deg=0.0),  # turning is for the classifier
        start=champion if config.mode == "finetune" else None,
        provenance={**meta.provenance, "trained_by": "harstream trainer", "mode": config.mode},
    )  # fmt: skip
    return result.model, replace(result.meta, units=dict(meta.units))  # the buffer's units
