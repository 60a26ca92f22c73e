"""``[worker] delay_ms``: every sample's label once, ``delay_ms`` late, equal to the offline
centred mean of the (HMM-decoded) probabilities, or to the offline fixed-lag HMM smoother for a
grammar with a lag temperature; a stream's end (a gap, an eviction) lets out what the delay held
back."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import keras
import numpy as np
import pytest

from models.hmm import ForwardFilter, Grammar, estimate
from models.refine import refined, refiner_channels, refiner_inputs
from models.refiner_runtime import LAG_KEY
from models.smoothing import as_served, centred
from models.spec import ModelMeta, ModelSpec
from models.training import predict_streams
from models.zoo import build_model
from pipeline.exceptions import ConfigError
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from pipeline.worker.state_store import StoreConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay

DELAY_MS, LAG = 200.0, 10  # at 50 Hz
TOLERANCE = 1e-5
"""the NumPy runtime against Keras (float32 both, one GRU step after another): 2e-6 failed about
one run in ten (unseeded weights)"""


def _model(data, next_step=False, smoother="mean"):
    """A small stream model with a grammar: decoding on, and with ``smoother="hmm"`` a lag
    temperature for :data:`DELAY_MS` (``"refined"``: the HMM smoother and a refiner of
    :data:`LAG`, in ``meta.provenance["refiner"]``)."""
    keras.utils.set_random_seed(0)  # the same weights every run
    spec = ModelSpec(setup="stream", cell="gru", hidden=8, next_step=next_step)
    A, prior = estimate([s.labels for s in data.streams], len(data.activities))
    lags = ((DELAY_MS, 0.2, 0.5, 0.6),) if smoother != "mean" else ()
    grammar = Grammar(tuple(map(tuple, A.tolist())), tuple(prior.tolist()), 0.5, True, lags=lags)
    values = np.concatenate([s.values for s in data.streams])
    meta = ModelMeta(spec, data.channels, data.activities, 50.0, tuple(values.mean(0).tolist()),
                     (0.5,) * 6, 128, 1, grammar=grammar)  # fmt: skip
    model = build_model(spec, meta)
    if smoother == "refined":
        meta.provenance["refiner"] = _refiner(data.activities)
    return model, meta, (A, prior)


def _refiner(classes) -> tuple[keras.Model, ModelMeta]:
    """A small refiner of :data:`LAG` (untrained: the worker must run whatever it is given)."""
    spec = ModelSpec(setup="stream", cell="gru", hidden=6)
    k = len(classes)
    meta = ModelMeta(spec, refiner_channels(classes), classes, 50.0, (-2.0,) * 2 * k,
                     (2.0,) * 2 * k, 128, 64, provenance={LAG_KEY: LAG})  # fmt: skip
    return build_model(spec, meta), meta


def _serve(data, model, meta, config, faults=None):
    faults = faults or FaultConfig()
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=7, faults=faults))
    serving = ServingModel.load(model, meta, "m@v1", refiner=meta.provenance.get("refiner"))
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), serving, config=config)
    worker.run(timeout=0.2)
    return worker, MemorySource(out, ["har.predictions"])


def _labelled(out, got=None) -> tuple[dict, list[dict]]:
    """(device, seq) -> (probabilities, t_ms), every sample once (added to ``got``); and the
    messages (read from ``out``, a source: those not read before)."""
    got, messages = {} if got is None else got, []
    for m in out.poll(10_000_000, 0):
        messages.append(p := json.loads(m.value))
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        for seq, probs in zip(steps["seq"], steps["probs"], strict=True):
            assert (p["device"], seq) not in got, "a sample labelled twice"
            got[p["device"], seq] = probs, p["t_ms"] if seq == p["seq"] else None
    return got, messages


def _offline(model, grammar, segments, meta=None) -> list[np.ndarray]:
    """Each segment from a fresh state: the model, the HMM filter, the centred mean; for a
    ``meta`` whose grammar has a lag temperature, the offline fixed-lag HMM smoother."""
    probs = predict_streams(model, segments)
    if meta is not None and (refiner := meta.provenance.get("refiner")) is not None:
        mine = refined(refiner[0], refiner_inputs(probs, meta.grammar), LAG)
        served = as_served(probs, meta.grammar, DELAY_MS, meta.rate_hz)
        return [(a + b) / 2 for a, b in zip(mine, served, strict=True)]
    if meta is not None and meta.grammar.lag_temperature(DELAY_MS) is not None:
        return as_served(probs, meta.grammar, DELAY_MS, meta.rate_hz)
    counts = [len(p) for p in probs]
    f = ForwardFilter(*grammar, 0.5, capacity=len(probs))
    decoded = np.split(f.filter(np.arange(len(probs)), counts, np.concatenate(probs)),
                       np.cumsum(counts)[:-1])  # fmt: skip
    return [centred(p, LAG) for p in decoded]


@pytest.mark.parametrize("smoother", ["mean", "hmm", "refined"])
def test_delayed_labels_equal_the_offline_evaluation_and_an_eviction_lets_out_the_rest(smoother):
    data = simulate(SyntheticConfig(devices=12, duration_s=10, seed=7))
    model, meta, grammar = _model(data, smoother=smoother)
    config = WorkerConfig(emit="every", delay_ms=DELAY_MS, min_dwell=5)
    faults = FaultConfig(duplicate=0.1, reorder=0.1, seed=2)
    worker, out = _serve(data, model, meta, config, faults)
    got, messages = _labelled(out)
    assert len(got) == data.n_samples - LAG * len(data.streams)  # each device's last LAG wait
    worker.store.evict(worker.store.devices())  # as idleness would: their streams end
    messages += _labelled(out, got)[1]
    assert len(got) == data.n_samples and all(m["delay_ms"] == DELAY_MS for m in messages)
    expected = _offline(model, grammar, [s.values for s in data.streams], meta)
    assert (worker.delay.filter is not None) == (smoother != "mean")
    assert (worker.stream_model.refiner is not None) == (smoother == "refined")
    for stream, probs in zip(data.streams, expected, strict=True):
        seqs = stream.sequence().tolist()
        mine = np.array([got[stream.device, s][0] for s in seqs])
        np.testing.assert_allclose(mine, probs, atol=TOLERANCE, err_msg=stream.device)
        times = stream.t0_ms + stream.sequence() * 1000.0 / 50.0  # a label names its sample
        named = {s: got[stream.device, s][1] for s in seqs if got[stream.device, s][1] is not None}
        assert named and all(t == pytest.approx(times[seqs.index(s)]) for s, t in named.items())
    assert worker.stats.events > 0


@pytest.mark.parametrize("smoother", ["mean", "hmm", "refined"])
def test_a_gap_that_resets_a_device_lets_out_its_held_labels_and_starts_afresh(smoother):
    data = simulate(SyntheticConfig(devices=6, duration_s=12, seed=3, gap_prob=0.004,
                                    gap_len=(60, 80)))  # fmt: skip
    jumps = [np.flatnonzero(np.diff(s.sequence()) > 51) + 1 for s in data.streams]
    assert sum(len(j) for j in jumps) >= 3
    model, meta, grammar = _model(data, next_step=True, smoother=smoother)
    config = WorkerConfig(emit="every", delay_ms=DELAY_MS, store=StoreConfig(max_gap=50))
    worker, out = _serve(data, model, meta, config)
    got, messages = _labelled(out)
    worker.store.evict(worker.store.devices())
    messages += _labelled(out, got)[1]
    assert len(got) == data.n_samples and all("anomaly" in m for m in messages)
    for stream, cut in zip(data.streams, jumps, strict=True):
        segments = np.split(stream.values, cut)
        probs = np.concatenate(_offline(model, grammar, segments, meta))
        mine = np.array([got[stream.device, s][0] for s in stream.sequence().tolist()])
        np.testing.assert_allclose(mine, probs, atol=TOLERANCE, err_msg=stream.device)


def test_a_worker_without_checkpoints_lets_out_everything_when_it_closes():
    data = simulate(SyntheticConfig(devices=4, duration_s=4, seed=2))
    model, meta, _ = _model(data)
    worker, out = _serve(data, model, meta, WorkerConfig(emit="every", delay_ms=DELAY_MS))
    got = _labelled(out)[0]
    assert worker.checkpoints is None and len(got) == data.n_samples - LAG * len(data.streams)
    worker.close()  # no state outlives it: what the delay held goes out now
    assert len(_labelled(out, got)[0]) == data.n_samples


def test_a_model_with_other_classes_swapped_in_lets_out_what_the_old_one_held():
    data = simulate(SyntheticConfig(devices=3, duration_s=3, seed=4))
    model, meta, _ = _model(data)
    worker, out = _serve(data, model, meta, WorkerConfig(emit="every", delay_ms=DELAY_MS))
    got = _labelled(out)[0]
    assert len(got) == data.n_samples - LAG * len(data.streams)
    fewer = replace(meta, classes=meta.classes[:4], grammar=None)
    assert worker.swap_in(ServingModel.load(build_model(meta.spec, fewer), fewer, "m@v2")) == "m@v1"
    got, messages = _labelled(out, got)
    assert len(got) == data.n_samples and {m["model"] for m in messages} == {"m@v1"}
    assert worker.delay.classes == 4 and not worker.delay.pending(worker.store.used_slots()).any()


def test_a_swap_keeps_what_the_hmm_smoother_holds_unless_the_new_model_smooths_otherwise():
    data = simulate(SyntheticConfig(devices=3, duration_s=3, seed=4))
    model, meta, _ = _model(data, smoother="hmm")
    worker, out = _serve(data, model, meta, WorkerConfig(emit="every", delay_ms=DELAY_MS))
    got = _labelled(out)[0]
    held, delay = LAG * len(data.streams), worker.delay
    assert len(got) == data.n_samples - held
    colder = replace(meta.grammar, lags=((DELAY_MS, 0.05, 0.5, 0.6),))
    worker.swap_in(ServingModel.load(model, replace(meta, grammar=colder), "m@v2"))
    assert worker.delay is delay and delay.filter.temperature == 0.05  # held, not let out
    assert len(_labelled(out, got)[0]) == data.n_samples - held
    plain = replace(meta.grammar, lags=())  # the centred mean: what the smoother held goes out
    worker.swap_in(ServingModel.load(model, replace(meta, grammar=plain), "m@v3"))
    assert worker.delay is not delay and worker.delay.filter is None
    assert len(_labelled(out, got)[0]) == data.n_samples


def test_delay_settings_are_checked():
    data = simulate(SyntheticConfig(devices=1, duration_s=2, seed=1))
    model, meta, _ = _model(data)
    window = replace(meta, spec=replace(meta.spec, setup="window"))
    bus = MemoryBus(partitions=1)
    with pytest.raises(ConfigError, match="serves none"):
        Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(bus), None,
               ServingModel("w@v1", window, predict=lambda x: x),
               config=WorkerConfig(delay_ms=500))  # fmt: skip
    with pytest.raises(ConfigError, match=">= 0"):
        Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(bus),
               ServingModel.load(model, meta, "m@v1"),
               config=WorkerConfig(delay_ms=-1))  # fmt: skip


class _Held(MemorySink):
    """A sink whose messages reach the bus only when flushed, as a Kafka producer's may."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.held: list[tuple] = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.held.append((topic, key, value))

    def flush(self, timeout_s: float | None = None) -> None:
        for message in self.held:
            super().send(*message)
        self.held.clear()


def test_an_idle_eviction_sends_the_held_labels_without_waiting_for_more_records():
    data = simulate(SyntheticConfig(devices=4, duration_s=4, seed=5))
    model, meta, _ = _model(data)
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=7))
    sink = _Held(out)
    config = WorkerConfig(emit="every", delay_ms=DELAY_MS, store=StoreConfig(idle_ttl_s=0.3))
    worker = Worker(MemorySource(bus, ["sensor.raw"]), sink,
                    ServingModel.load(model, meta, "m@v1"), config=config)  # fmt: skip
    worker.run(timeout=0.2)
    time.sleep(1.1)  # past the TTL and the next idle check (at most once a second)
    worker.step()  # no record comes: the devices are evicted, their last labels go out
    assert len(worker.store) == 0 and not sink.held
    assert len(_labelled(MemorySource(out, ["har.predictions"]))[0]) == data.n_samples
