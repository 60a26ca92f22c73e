"""The streaming worker: poll, decode, order, step every device's recurrent state, emit, commit.

One batch at a time::

    poll -> decode (bad input, unserved rates -> dead letters; declared units -> the model's)
    -> order and dedupe per device (Sequencer) -> resample devices at other rates (Resampler)
    -> one batched runtime call for every device with new samples (many-to-many)
    -> HMM decoding, and labels ``delay_ms`` late (Delay: fixed-lag HMM or centred mean), if set
    -> window predictions for every device whose window is due (many-to-one, batched)
    -> anomaly scores of the seq2seq detector for every device whose window is due (batched)
    -> predictions, anomaly scores and activity-change events to the sink -> flush -> commit

Offsets are committed only after the outputs that depend on them are flushed; records held by
the sequencer (waiting for a gap to fill) keep their partition's commit behind them. Between two
batches a :class:`~pipeline.worker.hooks.BatchHook` (a hot swap) may hand the worker a new
champion; every prediction names its model version and batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.exceptions import ConfigError
from pipeline.observability.report import (
    BatchCollector,
    ChangeEvent,
    Detections,
    Observer,
    SwapReport,
)
from pipeline.serving import ServingModel
from pipeline.state.checkpoint import Checkpointer
from pipeline.state.recovery import restore_devices, snapshot_devices
from pipeline.worker.activity import ActivityChange, ActivityTracker
from pipeline.worker.delay import Delay
from pipeline.worker.emission import (
    Emit,
    anomaly_message,
    chosen_steps,
    dead_letter,
    encode,
    event_message,
    sample_payloads,
    window_message,
)
from pipeline.worker.hooks import BatchHook, SwapRecord
from pipeline.worker.resampler import FASTEST, SLOWEST, Resampler
from pipeline.worker.sequencer import Arrivals, DeviceRun, Pending, Sequencer, SequencerConfig
from pipeline.worker.state_store import StateStore, StoreConfig
from streams.codecs import Codec, CodecConfig, make_codec
from streams.exceptions import DecodeError
from streams.protocols import Highwater, Message, Sink, Source, TopicPartition
from streams.record import RecordBlock
from streams.units import ToUnits, Units

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """Topics, emission policy and batch sizes of a worker.

    ``emit``: a many-to-many prediction for every sample, every ``every_k``-th sample of a
    device, or only when a device's most likely activity changes. ``decode``: a stream model
    whose training found that its grammar helps (an HMM over its per-sample probabilities,
    :mod:`models.hmm`) has its probabilities decoded with it; ``false`` emits the model's own.
    ``delay_ms``: the stream model's per-sample labels are emitted this late, each from the
    probabilities of the samples up to ``delay_ms`` after it (the fixed-lag smoother of
    :mod:`pipeline.worker.delay`; 0: at once, causal). ``refine``: a stream model saved with a
    refiner for that delay (:mod:`models.refine`) has its labels the mean of the smoother's and
    the refiner's; ``false`` emits the smoother's alone. ``min_dwell``: samples a new activity
    must persist before an activity-change event is sent (hysteresis).
    """

    input_topic: str = "sensor.raw"
    predictions_topic: str = "har.predictions"
    events_topic: str = "har.events"
    dlq_topic: str = "sensor.dlq"
    emit: Emit = "every_k"
    every_k: int = 25
    decode: bool = True
    delay_ms: float = 0.0
    refine: bool = True
    min_dwell: int = 50
    max_records: int = 5000
    poll_timeout_s: float = 0.05
    codec: CodecConfig = field(default_factory=CodecConfig, metadata={"setting": False})
    """set from the served model (its channel count), not a setting"""
    store: StoreConfig = field(default_factory=StoreConfig)
    sequencer: SequencerConfig = field(default_factory=SequencerConfig)


@dataclass
class WorkerStats:
    """Counters a worker keeps (the metrics issue exports them)."""

    batches: int = 0
    messages: int = 0
    records: int = 0
    samples: int = 0
    predictions: int = 0
    window_predictions: int = 0
    anomaly_windows: int = 0
    """windows the anomaly detector scored"""
    anomalies: int = 0
    """of those, the windows it flagged (score above its threshold)"""
    events: int = 0
    rejected: Counter = field(default_factory=Counter)
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=200_000))
    step_s: float = 0.0
    swaps: list[SwapRecord] = field(default_factory=list)
    checkpoints: int = 0
    restored_devices: int = 0
    restore_s: list[float] = field(default_factory=list)
    """seconds each restore on assignment took"""


class Worker:
    """Runs a stream model and/or a window model, and optionally an anomaly detector (a seq2seq
    model) beside them, over a source, into a sink."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        stream_model: ServingModel | None = None,
        window_model: ServingModel | None = None,
        *,
        anomaly_model: ServingModel | None = None,
        config: WorkerConfig | None = None,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
        swaps: Sequence[BatchHook] = (),
        observers: Sequence[Observer] = (),
        checkpoints: Checkpointer | None = None,
    ) -> None:
        if stream_model is None and window_model is None:
            raise ConfigError("a worker needs a stream model, a window model, or both")
        self.config = cfg = config or WorkerConfig()
        self.source, self.sink = source, sink
        self.stream_model, self.window_model = stream_model, window_model
        self.anomaly_model = anomaly_model
        if stream_model is not None and not cfg.decode:
            stream_model.decoder = None
        meta = (stream_model or window_model).meta
        if anomaly_model is not None:
            _check_detector(anomaly_model, meta)
        windowed = [m.meta.span for m in (window_model, anomaly_model) if m is not None]
        ring = max([cfg.store.ring, *windowed])
        store_cfg = StoreConfig(**{**cfg.store.__dict__, "ring": ring})
        self.tracker = ActivityTracker(cfg.min_dwell)
        self.resampler = Resampler(meta.rate_hz, len(meta.channels))
        self._in_model_units = ToUnits(Units(**meta.units), meta.channels)
        self.delay = self._delay(stream_model, store_cfg.initial_capacity)
        self._match_refiner(stream_model, store_cfg.initial_capacity)
        self.store = StateStore(
            len(meta.channels),
            store_cfg,
            on_grow=self._grow,
            on_reset=self._reset,
            on_evict=self._release,
        )
        self.codec = codec or make_codec("auto", cfg.codec)
        self.sequencer = Sequencer(cfg.sequencer)
        self.stats = WorkerStats()
        self._clock = clock
        self._positions: dict[TopicPartition, int] = {}
        self.checkpoints = checkpoints
        if checkpoints is not None:
            self.store.forgotten = []  # evicted devices' checkpoints are deleted
        self._since_checkpoint = 0
        self._stop = False
        served = (stream_model, window_model, anomaly_model)
        self._swaps = tuple(swap.start(served, self.store) for swap in swaps)
        self.observers = list(observers)
        self._collect = BatchCollector()
        self._next_idle_check = time.monotonic()
        self.batch = 0
        """number of the current batch (named in every prediction)"""
        self.last_step_at = time.monotonic()
        """when the loop last finished a batch (liveness)"""
        self.assigned: set[TopicPartition] = set()
        """the partitions the source owned after the last batch"""
        self.lag: dict[TopicPartition, int] | None = None
        """records behind the end of each owned partition after the last batch, if known"""

    def _delay(self, stream_model: ServingModel | None, capacity: int) -> Delay | None:
        if self.config.delay_ms < 0:
            raise ConfigError(f"delay_ms must be >= 0, not {self.config.delay_ms}")
        if self.config.delay_ms == 0:
            return None
        if stream_model is None:
            raise ConfigError("delay_ms delays a stream model's per-sample labels: this worker "
                              "serves none")  # fmt: skip
        meta = stream_model.meta
        return Delay(self.config.delay_ms, meta.rate_hz, len(meta.classes), capacity, meta.grammar)

    def _match_refiner(self, model: ServingModel | None, capacity: int) -> None:
        """Drop ``model``'s refiner unless this worker mixes it in: ``refine`` on and labels
        delayed by the refiner's lag."""
        refiner = model.refiner if model is not None else None
        if refiner is None:
            return
        if not self.config.refine or self.delay is None or self.delay.lag != refiner.lag:
            if self.config.refine:
                log.info("the model's refiner labels the sample %d back, this worker delays "
                         "labels by %s samples: the refiner is not used", refiner.lag,
                         self.delay.lag if self.delay is not None else "no")  # fmt: skip
            model.refiner = None
        else:
            refiner.ensure_capacity(capacity)

    # -- state hooks --------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        if self.stream_model is not None:
            self.stream_model.runtime.ensure_capacity(capacity)
            if self.stream_model.decoder is not None:
                self.stream_model.decoder.ensure_capacity(capacity)
            if self.delay is not None:
                self.delay.ensure_capacity(capacity)
            if self.stream_model.refiner is not None:
                self.stream_model.refiner.ensure_capacity(capacity)
        self.tracker.ensure_capacity(capacity)
        self.resampler.ensure_capacity(capacity)

    def _reset(self, slots: np.ndarray) -> None:
        if self.stream_model is not None:
            self.stream_model.runtime.reset(slots)
            if self.stream_model.decoder is not None:
                self.stream_model.decoder.reset(slots)
            if self.delay is not None:
                self.delay.reset(slots)
            if self.stream_model.refiner is not None:
                self.stream_model.refiner.reset(slots)
        self.tracker.reset(slots)
        self.resampler.reset(slots)
        for swap in self._swaps:
            swap.note_reset(slots)

    def swap_in(self, model: ServingModel) -> str:
        """Serve ``model`` from the next batch on (call between batches); the old version."""
        slot = f"{model.slot}_model"
        if model.decoder is not None and self.config.decode:  # beliefs primed with the states
            model.decoder.ensure_capacity(self.store.capacity)
        else:
            model.decoder = None
        old = getattr(self, slot)
        if slot == "stream_model" and self.delay is not None:
            if self.delay.fits(len(model.meta.classes), model.meta.grammar):
                self.delay.use(model.meta.grammar)
            else:  # what the old one holds back goes out now
                self._release(self.store.used_slots())
                self.delay = self._delay(model, self.store.capacity)
        if slot == "stream_model":
            self._match_refiner(model, self.store.capacity)
        setattr(self, slot, model)
        return old.version if old is not None else ""

    def close(self) -> None:
        """Checkpoint and commit, stop following the registry, leave the group, close."""
        if self.checkpoints is None:  # nothing will carry what the delay holds back
            self._release(self.store.used_slots())
        self.sink.flush()
        self.checkpoint()
        for swap in self._swaps:
            swap.close()
        self.source.close()  # revokes every partition (see on_revoked)
        self.sink.close()
        if self.checkpoints is not None:
            self.checkpoints.close()

    # -- checkpoints and rebalances --------------------------------------------------------------

    def checkpoint(self) -> int:
        """Write the states of the devices that changed, then commit the offsets they cover
        (without checkpoints: just commit). The number of states written."""
        written = 0
        if self.checkpoints is not None:
            store = self.store
            slots = np.flatnonzero(store.dirty)
            deleted, store.forgotten = store.forgotten, []
            model = self.stream_model or self.window_model
            states = snapshot_devices(store, self.tracker, self.resampler, model, slots,
                                      self.delay)  # fmt: skip
            self.checkpoints.write(states, deleted)
            store.dirty[slots] = False
            self.stats.checkpoints += 1
            written = len(slots)
            self._collect.report.checkpointed += written
            log.debug("checkpoint written", extra={"devices": written, "deleted": len(deleted)})
        self._since_checkpoint = 0
        offsets = dict(self._positions)
        for tp, held in self.sequencer.held_offsets().items():
            offsets[tp] = min(offsets.get(tp, held), held)
        if offsets:
            self.source.commit(offsets)
        return written

    def on_assigned(self, partitions) -> None:
        """New partitions: restore their devices' states before their first record."""
        ours = sorted(tp.partition for tp in partitions if tp.topic == self.config.input_topic)
        if self.checkpoints is None:
            log.info("partitions assigned", extra={"partitions": ours})
            return
        started = time.perf_counter()
        states = self.checkpoints.read(ours)
        restore_devices(self.store, self.tracker, self.resampler, self.stream_model, states,
                        self.delay)  # fmt: skip
        self.stats.restored_devices += len(states)
        self.stats.restore_s.append(time.perf_counter() - started)
        self._collect.report.restores.append((len(states), self.stats.restore_s[-1]))
        log.info(
            "partitions assigned",
            extra={
                "partitions": ours,
                "restored_devices": len(states),
                "seconds": round(self.stats.restore_s[-1], 3),
            },
        )

    def on_revoked(self, partitions) -> None:
        """Partitions taken away: flush, checkpoint and commit, then forget their devices."""
        gone = {tp for tp in partitions if tp.topic == self.config.input_topic}
        if not gone:
            return
        numbers = np.array(sorted(tp.partition for tp in gone))
        store = self.store
        used = store.used_slots()
        leaving = used[np.isin(store.partition[used], numbers)]
        if self.checkpoints is None:  # the new owner starts them afresh
            self._release(leaving)
        self.sink.flush()
        self.checkpoint()
        store.evict([store.device(int(s)) for s in leaving], handed_over=True)
        self.sequencer.drop(gone)
        for tp in gone:
            self._positions.pop(tp, None)
        log.info(
            "partitions revoked",
            extra={"partitions": numbers.tolist(), "handed_over_devices": len(leaving)},
        )

    # -- the loop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch."""
        self._stop = True

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop

    def run(self, count: int | None = None, timeout: float | None = None) -> WorkerStats:
        """Process batches until ``count`` messages were processed, nothing arrived for
        ``timeout`` seconds, or :meth:`stop` was called; then apply held records and commit."""
        idle_since = time.monotonic()
        while not self._stop and (count is None or self.stats.messages < count):
            n = self.step()
            if n:
                idle_since = time.monotonic()
            elif timeout is not None and time.monotonic() - idle_since > timeout:
                break
        while True:  # apply what the sequencer still holds (a run stops at each gap)
            self.step(flush=True)
            if not self.sequencer.held_records:
                break
        return self.stats

    def step(self, flush: bool = False) -> int:
        """Poll and process one batch; return the number of messages."""
        cfg = self.config
        self.batch += 1
        self._collect.start(self.batch)
        evicted = self._evict_idle()
        for swap in self._swaps:
            if (record := swap.at_boundary(self.store, self.batch, self.swap_in)) is not None:
                self.stats.swaps.append(record)
                self._collect.report.swaps.append(self._swap_report(record))
        before = self._counts()
        predicted = self.stats.predictions + self.stats.window_predictions
        limit = min([cfg.max_records] + [s.batch_limit for s in self._swaps if s.batch_limit])
        messages = [] if flush else self.source.poll(limit, cfg.poll_timeout_s)
        pending, arrivals = self._decode(messages)
        runs = self.sequencer.sequence(pending, self._last_applied, flush, arrivals)
        started = time.perf_counter()
        if runs:
            self._apply(runs)
        step_s = time.perf_counter() - started
        self.stats.step_s += step_s
        if messages or runs or evicted:  # an eviction may have let delayed labels out
            self.sink.flush()
            self._advance(messages)
            self._note_first_prediction(predicted)
        self.stats.batches += bool(messages)
        self.stats.messages += len(messages)
        self.last_step_at = time.monotonic()
        self._report(messages, runs, step_s, before)
        return len(messages)

    def _counts(self) -> tuple[int, ...]:
        """Running totals a batch report gives the difference of."""
        seq = self.sequencer.stats
        return (self.stats.records, self.stats.samples, seq.duplicate_samples,
                seq.missing_samples, seq.restarts)  # fmt: skip

    def _report(self, messages, runs, step_s, before: tuple[int, ...]) -> None:
        """Update the lag and tell the observers what this batch did."""
        self.assigned = self.source.assignment()
        if isinstance(self.source, Highwater):
            ends = self.source.highwater()
            self.lag = {tp: max(0, end - self._positions[tp])
                        for tp, end in ends.items() if tp in self._positions}  # fmt: skip
        if not self.observers:
            return
        model = self.stream_model or self.window_model
        records, samples, duplicates, missing, restarts = (
            now - then for now, then in zip(self._counts(), before, strict=True)
        )
        report = self._collect.finish(
            model.meta.classes, model.version, messages=len(messages), records=records,
            samples=samples, step_s=step_s if runs else 0.0, duplicate_samples=duplicates,
            missing_samples=missing, restarts=restarts, devices=len(self.store),
            evictions=self.store.evictions, lag=self.lag, wall_time=self._clock(),
        )  # fmt: skip
        for observer in self.observers:
            observer.observe(report)

    def _evict_idle(self) -> bool:
        """Forget devices idle for ``idle_ttl_s`` (checked a few times per TTL); whether any
        was."""
        now = time.monotonic()
        if now < self._next_idle_check:
            return False
        self._next_idle_check = now + max(1.0, self.store.config.idle_ttl_s / 10)
        return bool(self.store.evict_idle())

    def _swap_report(self, record: SwapRecord) -> SwapReport:
        served = (self.stream_model, self.window_model, self.anomaly_model)
        slot = next(m.slot for m in served if m is not None and m.version == record.version)
        return SwapReport(slot, record.version, record.previous, record.batch,
                          tuple(record.pauses_ms))  # fmt: skip

    def _note_first_prediction(self, predicted_before: int) -> None:
        """Time the first flushed prediction of the latest swapped-in model."""
        last = self.stats.swaps[-1] if self.stats.swaps else None
        predicted = self.stats.predictions + self.stats.window_predictions
        if last is not None and last.first_prediction_at is None and predicted > predicted_before:
            last.first_prediction_at = time.time()

    def _decode(self, messages: list[Message]) -> tuple[list[Pending], Arrivals | None]:
        """The records of ``messages``: the common ones as a block (:meth:`_arrivals`), the
        others one by one; what cannot be served goes to the dead letters."""
        now = time.monotonic()
        found = self.codec.decode_block([msg.value for msg in messages])
        decoded, arrivals = found.others, None
        if found.block is not None:
            arrivals, left = self._arrivals(messages, found.block, found.rows, now)
            for j in left:
                decoded[int(found.rows[j])] = found.block.record(j)
        out = []
        for msg, record in zip(messages, decoded, strict=True):
            if record is None:  # in the block
                continue
            if isinstance(record, DecodeError):
                self._dead_letter(msg, record.reason, record.detail, decode=True)
                continue
            if msg.key is None:
                self._dead_letter(msg, "missing_key", "records must be keyed by device id")
                continue
            if msg.key != record.device.encode("utf-8"):
                self._dead_letter(msg, "key_mismatch", f"key {msg.key!r} != {record.device!r}")
                continue
            if not self.resampler.supports(record.rate_hz):
                self._dead_letter(msg, "rate_unsupported", self._rates(record.rate_hz))
                continue
            if record.units:
                record = self._in_model_units(record)
            tp = TopicPartition(msg.topic, msg.partition)
            out.append(Pending(record, tp, msg.offset, now, float(msg.timestamp_ms)))
            self.stats.records += 1
        return out, arrivals

    def _arrivals(
        self, messages: list[Message], block: RecordBlock, rows: np.ndarray, now: float
    ) -> tuple[Arrivals | None, list[int]]:
        """The records of ``block`` (from ``messages[rows]``) that pass every check as one
        block (keyed by their device, from the input topic, at a served rate; in the model's
        units), and the rows of the others (to be checked one by one)."""
        topic = self.config.input_topic
        sources = [messages[i] for i in rows.tolist()]
        ok = np.array([msg.key == device.encode("utf-8") and msg.topic == topic
                       for msg, device in zip(sources, block.devices, strict=True)])  # fmt: skip
        rates = np.unique(block.rate_hz).tolist()
        ok &= np.isin(block.rate_hz, [r for r in rates if self.resampler.supports(r)])
        left = np.flatnonzero(~ok).tolist()
        if left:
            block = block.take(ok)
            sources = [msg for msg, good in zip(sources, ok.tolist(), strict=True) if good]
        if not len(block):
            return None, left
        self.stats.records += len(block)
        arrivals = Arrivals(
            self._in_model_units.block(block), topic,
            np.array([msg.partition for msg in sources]), np.array([msg.offset for msg in sources]),
            np.array([msg.timestamp_ms for msg in sources], np.float64), now,
        )  # fmt: skip
        return arrivals, left

    def _rates(self, rate_hz: float) -> str:
        r = self.resampler.rate_hz
        return (f"{rate_hz:g} Hz: this worker serves {SLOWEST * r:g} to {FASTEST * r:g} Hz "
                f"(its model runs at {r:g} Hz)")  # fmt: skip

    def _dead_letter(self, msg: Message, reason: str, detail: str, decode: bool = False) -> None:
        self.stats.rejected[reason] += 1
        self._collect.dead_letter(reason, decode)
        envelope = dead_letter(msg, reason, detail)
        self.sink.send(self.config.dlq_topic, msg.key, encode(envelope))

    def _last_applied(self, devices: list[str]) -> tuple[np.ndarray, np.ndarray]:
        slots = self.store.slots_for(devices)  # may grow the arrays: index them afterwards
        return self.store.last_seq[slots], self.store.last_time_ms[slots]

    def _advance(self, messages: list[Message]) -> None:
        """Note how far each partition was read; commit (at a checkpoint, when they are on)."""
        read: dict[tuple[str, int], int] = {}
        for msg in messages:  # in offset order per partition: the last is the furthest
            read[msg.topic, msg.partition] = msg.offset
        for (topic, partition), offset in read.items():
            tp = TopicPartition(topic, partition)
            self._positions[tp] = max(self._positions.get(tp, 0), offset + 1)
        self._since_checkpoint += len(messages)
        if self.checkpoints is None or self.checkpoints.due(self._since_checkpoint):
            self.checkpoint()

    # -- applying samples -----------------------------------------------------------------

    def _apply(self, runs: list[DeviceRun]) -> None:
        store = self.store
        slots = store.slots_for([r.device for r in runs])
        reset = np.array([r.gap_before > store.config.max_gap or r.restart for r in runs])
        if reset.any():
            self._release(slots[reset])
            store.reset(slots[reset])
        self.stats.samples += sum(len(r.seqs) for r in runs)
        store.last_seq[slots] = [int(r.seqs[-1]) for r in runs]
        store.last_time_ms[slots] = [float(r.times_ms[-1]) for r in runs]
        store.partition[slots] = [r.partition for r in runs]
        store.offset[slots] = [r.offset for r in runs]
        store.dirty[slots] = True
        sent_ms = np.array([r.kafka_ts_ms for r in runs])
        latency = (self._clock() * 1000.0 - sent_ms[~np.isnan(sent_ms)]).tolist()
        self.stats.latency_ms.extend(latency)
        self._collect.latency(latency)
        runs, slots = self.resampler.resample(runs, slots)  # to the model's rate
        if not runs:
            return
        counts = np.array([len(r.seqs) for r in runs], dtype=np.int64)
        samples = np.concatenate([r.values for r in runs])
        seen_before = store.seen[slots].copy()
        windowed = [m for m in (self.window_model, self.anomaly_model) if m is not None]
        due = []
        if windowed:
            owner = np.repeat(np.arange(len(slots)), counts)
            within = np.arange(len(samples)) - np.repeat(np.cumsum(counts) - counts, counts)
            due = [self._due_windows(slots, counts, samples, owner, within, m.meta)
                   for m in windowed]  # fmt: skip
        store.push(slots, counts, samples)
        for model, (rows, ends, windows) in zip(windowed, due, strict=True):
            if len(rows) and model is self.window_model:
                self._predict_windows(runs, rows, ends, windows)
            elif len(rows):
                self._score_windows(runs, rows, ends, windows)
        if self.stream_model is not None:
            out = self.stream_model.runtime.advance(slots, counts, samples)
            for swap in self._swaps:
                swap.follow(store, slots, counts, samples)
            probs, decoder = out.probs, self.stream_model.decoder
            if decoder is not None:
                probs = decoder.filter(slots, counts, probs)
            if self.delay is None:
                self._emit_stream(runs, slots, counts, seen_before, probs, out.anomaly)
                return
            smoothed = out.probs if self.delay.filter is not None else probs  # HMM: its own
            refiner = self.stream_model.refiner
            refined = None
            if refiner is not None:  # the decoder's beliefs, if it ran, are the refiner's
                refined = refiner.advance(slots, counts, out.probs,
                                          None if decoder is None else probs)  # fmt: skip
            late = self.delay.push(runs, slots, counts, smoothed, out.anomaly, refined)
            if len(late.runs):
                before = np.maximum(seen_before[late.index] - self.delay.lag, 0)
                self._emit_stream(late.runs, late.slots, late.counts, before, late.probs,
                                  late.anomaly)  # fmt: skip

    def _release(self, slots: np.ndarray) -> None:
        """Emit the labels the delay still holds back for ``slots``, whose streams end (a gap
        resets them, or they are evicted); call while they still hold their devices."""
        if self.delay is None or not len(slots):
            return
        slots = slots[self.delay.pending(slots) > 0]
        if not len(slots):
            return
        store, none = self.store, np.zeros(0)
        ends = [DeviceRun(store.device(s), none, none, none, none,
                          partition=int(store.partition[s])) for s in slots.tolist()]  # fmt: skip
        refiner = self.stream_model.refiner
        late = self.delay.flush(ends, slots, refiner.flush(slots) if refiner else None)
        if refiner is not None:
            refiner.reset(slots)
        before = np.maximum(store.seen[late.slots] - self.delay.lag, 0)
        self._emit_stream(late.runs, late.slots, late.counts, before, late.probs, late.anomaly)

    def _emit_stream(self, runs, slots, counts, seen_before, probs, anomaly) -> None:
        cfg, model = self.config, self.stream_model
        classes = model.meta.classes
        top = probs.argmax(axis=1)
        starts = np.cumsum(counts) - counts
        events, changed = self.tracker.update(slots, top, counts)
        for event in events:
            self._send_event(runs[event.run], event, classes, model.version)
        if cfg.emit == "on_change":
            owner = np.repeat(np.arange(len(runs)), counts)
            steps = (np.arange(len(top)) - np.repeat(starts, counts))[changed]
            per_run = np.bincount(owner[changed], minlength=len(runs))
        else:
            steps, per_run = chosen_steps(cfg.emit, cfg.every_k, seen_before, counts)
        emitting = np.flatnonzero(per_run)
        if not len(emitting):
            return
        delay_ms = self.delay.delay_ms if self.delay is not None else 0.0
        payloads = sample_payloads([runs[i] for i in emitting.tolist()], starts[emitting], steps,
                                   per_run[emitting].tolist(), probs, top, anomaly, classes,
                                   model.version, self.batch, self._clock() * 1000.0,
                                   delay_ms)  # fmt: skip
        for payload in payloads:
            self.sink.send(cfg.predictions_topic, runs[emitting[payload.run]].device.encode(),
                           payload.data)  # fmt: skip
        last_of_run = {payload.run: payload for payload in payloads}
        for k, payload in last_of_run.items():
            i = int(emitting[k])
            run, a, last = runs[i], int(starts[i]), payload.last
            t = int(top[a + last])
            self._collect.sample(run.device, int(run.seqs[last]), float(run.times_ms[last]), t,
                                 float(probs[a + last, t]), int(run.labels[last]),
                                 payload.anomaly)  # fmt: skip
        emitted = steps + np.repeat(starts[emitting], per_run[emitting])
        self.stats.predictions += len(emitted)
        self._collect.predicted("sample", classes, top[emitted])

    def _due_windows(self, slots, counts, samples, owner, within, meta) -> tuple[np.ndarray, ...]:
        """The windows of ``meta.span`` samples, one every ``meta.stride`` samples of a device's
        stream, that end in this batch (call before the batch enters the rings): for each, the
        index of its device's run, the position of its last sample within the run, and the
        window ``(M, span, C)``. ``owner``/``within``: each new sample's run and position."""
        store, W, C = self.store, meta.span, samples.shape[1]
        g = store.seen[slots][owner] + within  # each new sample's index in its device's stream
        due = np.flatnonzero((g >= W - 1) & ((g - (W - 1)) % meta.stride == 0))
        if len(due) == 0:
            return due, due, np.zeros((0, W, C), np.float32)
        # the W-1 samples before this batch, for the devices with a window due
        devices = np.unique(owner[due])
        prev = store.recent(slots[devices], W - 1).reshape(-1, C)
        stack = np.concatenate([prev, samples])
        # the window ending at new sample j of a device covers positions j .. j+W-1 of that
        # device's (previous W-1 samples + new samples)
        row = np.searchsorted(devices, owner[due])[:, None]
        j = within[due][:, None] + np.arange(W)[None, :]
        first_new = (np.cumsum(counts) - counts)[owner[due]][:, None]
        idx = np.where(j < W - 1, row * (W - 1) + j, len(prev) + first_new + j - (W - 1))
        return owner[due], within[due], stack[idx].astype(np.float32)

    def _predict_windows(self, runs, rows, ends, windows) -> None:
        """The window model's prediction of each due window (:meth:`_due_windows`), sent."""
        model = self.window_model
        probs = model.predict(windows)
        classes = model.meta.classes
        self._collect.predicted("window", classes, probs.argmax(axis=1))
        now_ms = self._clock() * 1000.0
        for k, (i, w) in enumerate(zip(rows.tolist(), ends.tolist(), strict=True)):
            run = runs[i]
            message = window_message(run, w, model.meta.window, probs[k], classes,
                                     model.version, self.batch, now_ms)  # fmt: skip
            self._send(self.config.predictions_topic, run.device, message)
        self.stats.window_predictions += len(rows)

    def _score_windows(self, runs, rows, ends, windows) -> None:
        """The anomaly detector's score of each due window (:meth:`_due_windows`), sent."""
        model = self.anomaly_model
        span, threshold = model.meta.span, float(model.meta.threshold)
        scores = np.asarray(model.score(windows), np.float64)
        flagged = scores > threshold
        now_ms = self._clock() * 1000.0
        seq_last, t_ms = np.zeros(len(rows), np.int64), np.zeros(len(rows))
        for k, (i, w) in enumerate(zip(rows.tolist(), ends.tolist(), strict=True)):
            run = runs[i]
            seq_last[k], t_ms[k] = int(run.seqs[w]), float(run.times_ms[w])
            message = anomaly_message(run, w, span, float(scores[k]), threshold,
                                      model.version, self.batch, now_ms)  # fmt: skip
            self._send(self.config.predictions_topic, run.device, message)
        self.stats.anomaly_windows += len(rows)
        self.stats.anomalies += int(flagged.sum())
        self._collect.detected(Detections(
            [runs[i].device for i in rows.tolist()], seq_last - (span - 1), seq_last, t_ms,
            scores, flagged, threshold, model.version,
        ))  # fmt: skip

    def _send_event(self, run: DeviceRun, event: ActivityChange, classes, version: str) -> None:
        self.stats.events += 1
        device, current = run.device, classes[event.current]
        previous = classes[event.previous] if event.previous >= 0 else None
        seq, t_ms = int(run.seqs[event.position]), float(run.times_ms[event.position])
        self._collect.event(ChangeEvent(device, previous, current, seq, t_ms, version))
        message = event_message(device, previous, current, seq, t_ms, version)
        self._send(self.config.events_topic, device, message)

    def _send(self, topic: str, device: str, message: dict) -> None:
        self.sink.send(topic, device.encode("utf-8"), encode(message))


def _check_detector(detector: ServingModel, meta) -> None:
    """An anomaly detector must read what the worker's classifiers read: the same channels, at
    the same rate, in the same units (the worker converts and resamples once, for all)."""
    d = detector.meta
    if detector.score is None:
        raise ConfigError(f"{detector.version} is a {d.spec.setup} model, not an anomaly detector "
                          "(a seq2seq model)")  # fmt: skip
    if d.threshold is None:
        raise ConfigError(f"{detector.version} has no anomaly threshold in its metadata (train it "
                          "with harstream train --setup seq2seq)")  # fmt: skip
    if d.channels != meta.channels or d.rate_hz != meta.rate_hz or d.units != meta.units:
        raise ConfigError(
            f"the anomaly detector {detector.version} reads {list(d.channels)} at {d.rate_hz:g} Hz "
            f"in {d.units}; the worker's models read {list(meta.channels)} at {meta.rate_hz:g} Hz "
            f"in {meta.units}"
        )
