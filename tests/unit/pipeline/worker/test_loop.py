"""The worker on the in-memory bus: predictions equal the offline Keras model's, whatever the
replay duplicates or reorders; window predictions, events, dead letters and commits."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from corpus import bad_input, sample_record
from models.hmm import ForwardFilter, Grammar, estimate
from models.spec import ModelMeta, ModelSpec
from models.training import predict_streams
from models.zoo import build_model
from pipeline.observability.metrics import WorkerMetrics
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.codecs import BinaryCodec, CodecConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.protocols import TopicPartition
from streams.replay import FaultConfig, ReplayConfig, replay


@pytest.fixture(scope="module")
def fleet():
    return simulate(SyntheticConfig(devices=40, duration_s=12, seed=5))


def _meta(spec, data, window=128, stride=1):
    mean = tuple(float(v) for v in np.concatenate([s.values for s in data.streams]).mean(0))
    return ModelMeta(spec, data.channels, data.activities, 50.0, mean, (0.5,) * 6, window, stride)


def _run(data, worker_config, stream=None, window=None, faults=None):
    faults = faults or FaultConfig()
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    report = replay(data, MemorySink(bus), ReplayConfig(samples_per_record=7, faults=faults))
    worker = Worker(
        MemorySource(bus, ["sensor.raw"]), MemorySink(out), stream, window, config=worker_config
    )
    worker.run(timeout=0.2)
    topics = {}
    for m in MemorySource(out, ["har.predictions", "har.events", "sensor.dlq"]).poll(
        max_records=10_000_000, timeout_s=0
    ):
        topics.setdefault(m.topic, []).append(json.loads(m.value))
    return worker, report, bus, topics


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stream_predictions_equal_keras_despite_duplicates_and_reordering(fleet, cell):
    spec = ModelSpec(setup="stream", cell=cell, layers=2, hidden=8)
    meta = _meta(spec, fleet)
    model = build_model(spec, meta)
    faults = FaultConfig(duplicate=0.1, reorder=0.1, seed=2)
    worker, report, bus, topics = _run(
        fleet, WorkerConfig(emit="every", min_dwell=10), ServingModel.load(model, meta, "m@v1"),
        faults=faults,
    )  # fmt: skip
    assert report.faults["duplicated"] > 0 and report.faults["reordered"] > 0
    got: dict[str, dict[int, list[float]]] = {}
    for p in topics["har.predictions"]:
        assert p["model"] == "m@v1" and p["kind"] == "sample"
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        for seq, probs in zip(steps["seq"], steps["probs"], strict=True):
            assert seq not in got.setdefault(p["device"], {})  # every sample once
            got[p["device"]][seq] = probs
    offline = predict_streams(model, [s.values for s in fleet.streams])
    for stream, probs in zip(fleet.streams, offline, strict=True):
        mine = got[stream.device]
        assert sorted(mine) == stream.sequence().tolist()
        np.testing.assert_allclose(
            np.array([mine[s] for s in stream.sequence().tolist()]), probs, atol=1e-5
        )
    assert worker.stats.samples == fleet.n_samples
    assert worker.sequencer.stats.duplicates >= report.faults["duplicated"]
    assert "har.events" in topics
    assert all(e["to"] in fleet.activities for e in topics["har.events"])
    assert bus.committed[TopicPartition("sensor.raw", 0)] > 0


@pytest.mark.parametrize("decode", [True, False])
def test_decoded_predictions_equal_the_offline_hmm_filter_over_keras(fleet, decode):
    """A model whose grammar is enabled has its probabilities decoded (the HMM forward filter
    over the Keras model's, per device from its first sample); ``decode=False`` emits the
    model's own."""
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    A, prior = estimate([s.labels for s in fleet.streams], len(fleet.activities))
    grammar = Grammar(tuple(map(tuple, A.tolist())), tuple(prior.tolist()), 0.5, True)
    meta = replace(_meta(spec, fleet), grammar=grammar)
    model = build_model(spec, meta)
    faults = FaultConfig(duplicate=0.1, reorder=0.1, seed=2)
    _, _, _, topics = _run(fleet, WorkerConfig(emit="every", decode=decode),
                           ServingModel.load(model, meta, "m@v1"), faults=faults)  # fmt: skip
    got: dict[str, dict[int, list[float]]] = {}
    for p in topics["har.predictions"]:
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        for seq, probs in zip(steps["seq"], steps["probs"], strict=True):
            got.setdefault(p["device"], {})[seq] = probs
    offline = predict_streams(model, [s.values for s in fleet.streams])
    if decode:
        f = ForwardFilter(A, prior, 0.5, capacity=len(offline))
        counts = [len(p) for p in offline]
        offline = np.split(f.filter(np.arange(len(offline)), counts, np.concatenate(offline)),
                           np.cumsum(counts)[:-1])  # fmt: skip
    for stream, probs in zip(fleet.streams, offline, strict=True):
        mine = got[stream.device]
        np.testing.assert_allclose(
            np.array([mine[s] for s in stream.sequence().tolist()]), probs, atol=1e-5
        )


def test_window_predictions_equal_keras_on_the_same_windows(fleet):
    spec = ModelSpec(architecture="cnn", layers=1, hidden=4)
    meta = _meta(spec, fleet, window=32, stride=16)
    model = build_model(spec, meta)
    window = ServingModel.load(model, meta, "w@v2")
    _, _, _, topics = _run(fleet, WorkerConfig(), window=window)
    preds = [p for p in topics["har.predictions"] if p["kind"] == "window"]
    stream = fleet.streams[0]
    mine = {p["seq_last"]: p for p in preds if p["device"] == stream.device}
    ends = np.arange(31, stream.n, 16)
    assert sorted(mine) == stream.sequence()[ends].tolist()
    windows = np.stack([stream.values[e - 31 : e + 1] for e in ends])
    expected = model.predict(windows, verbose=0)
    got = np.array([mine[s]["probs"] for s in stream.sequence()[ends].tolist()])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert {p["model"] for p in preds} == {"w@v2"}


def test_emit_every_k_and_on_change(fleet):
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    meta = _meta(spec, fleet)
    model = build_model(spec, meta)
    _, _, _, every = _run(fleet, WorkerConfig(emit="every_k", every_k=10),
                          ServingModel.load(model, meta, "v"))  # fmt: skip
    emitted = [p.get("steps", {"seq": [p["seq"]]})["seq"] for p in every["har.predictions"]]
    assert sum(map(len, emitted)) == pytest.approx(fleet.n_samples / 10, abs=len(fleet.streams))
    _, _, _, changes = _run(fleet, WorkerConfig(emit="on_change"),
                            ServingModel.load(model, meta, "v"))  # fmt: skip
    assert 0 < len(changes["har.predictions"]) < len(every["har.predictions"])


def test_bad_records_go_to_the_dead_letter_topic_with_their_reason():
    spec = ModelSpec(setup="stream", cell="lstm", hidden=4)
    meta = ModelMeta(spec, ("a", "b", "c"), ("SIT", "WALK"), 50.0, (0,) * 3, (1,) * 3, 16, 1)
    bus, out = MemoryBus(1), MemoryBus(1)
    sink = MemorySink(bus)
    config = CodecConfig(channels=3, max_samples=64, activities=("SIT", "WALK"))
    bad = {r: bad_input("binary", r, config) for r in ("truncated", "non_finite", "bad_magic")}
    bad["invalid_json"] = bad_input("json", "invalid_json", config)
    for data in bad.values():
        sink.send("sensor.raw", b"phone-7", data)
    good = BinaryCodec(config).encode(sample_record(device="phone-7"))
    sink.send("sensor.raw", None, good)  # no key
    sink.send("sensor.raw", b"other", good)  # key is not the device
    sink.send("sensor.raw", b"phone-7", good)
    worker = Worker(
        MemorySource(bus, ["sensor.raw"]),
        MemorySink(out),
        ServingModel.load(build_model(spec, meta), meta, "v"),
        config=WorkerConfig(codec=config, emit="every"),
    )
    worker.run(timeout=0.1)
    msgs = MemorySource(out, ["sensor.dlq", "har.predictions"]).poll(1000, 0)
    dlq = [json.loads(m.value) for m in msgs if m.topic == "sensor.dlq"]
    reasons = [d["reason"] for d in dlq]
    assert reasons == [*bad, "missing_key", "key_mismatch"]
    assert bytes.fromhex(dlq[0]["value_hex"]) == bad["truncated"]
    assert dlq[0]["topic"] == "sensor.raw" and dlq[0]["offset"] == 0
    assert worker.stats.rejected["non_finite"] == 1
    assert len([m for m in msgs if m.topic == "har.predictions"]) == 1  # the valid one


def test_a_long_run_of_one_device_is_split_into_messages_of_bounded_size():
    from pipeline.worker.emission import MAX_STEPS_PER_MESSAGE

    spec = ModelSpec(setup="stream", cell="gru", hidden=4)
    meta = ModelMeta(spec, ("a", "b", "c"), ("SIT", "WALK"), 50.0, (0,) * 3, (1,) * 3, 16, 1)
    n = 2 * MAX_STEPS_PER_MESSAGE + 37  # one record: one run of n samples in one batch
    bus, out = MemoryBus(1), MemoryBus(1)
    record = sample_record(n=5, device="phone-7")
    values = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    long = type(record)("phone-7", 0, record.t0_ms, 50.0, values)
    config = CodecConfig(channels=3)
    MemorySink(bus).send("sensor.raw", b"phone-7", BinaryCodec(config).encode(long))
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out),
                    ServingModel.load(build_model(spec, meta), meta, "v"),
                    config=WorkerConfig(codec=config, emit="every"))  # fmt: skip
    worker.run(timeout=0.1)
    messages = [json.loads(m.value) for m in MemorySource(out, ["har.predictions"]).poll(100, 0)]
    assert len(messages) == 3
    assert all(len(m["steps"]["seq"]) <= MAX_STEPS_PER_MESSAGE for m in messages)
    seqs = [s for m in messages for s in m["steps"]["seq"]]
    assert seqs == list(range(n))  # every sample once, in order
    ranges = [(m["seq_first"], m["seq_last"]) for m in messages]
    assert ranges[0][0] == 0 and ranges[-1][1] == n - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))


def test_a_device_that_restarts_its_count_is_served_as_a_new_stream():
    """Devices that reboot count from 0 again, an hour later: nothing is dropped as a
    duplicate, and the new stream is predicted from a fresh state."""
    before = simulate(SyntheticConfig(devices=4, duration_s=6, seed=5, gap_prob=0.0))
    after = simulate(SyntheticConfig(devices=4, duration_s=6, seed=6, gap_prob=0.0,
                                     t0_ms=before.streams[0].t0_ms + 3_600_000))  # fmt: skip
    spec = ModelSpec(setup="stream", cell="gru", hidden=8)
    meta = _meta(spec, before)
    model = build_model(spec, meta)
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    for data in (before, after):
        replay(data, MemorySink(bus), ReplayConfig(samples_per_record=7))
    serving, metrics = ServingModel.load(model, meta, "m@v1"), WorkerMetrics(process=False)
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), serving,
                    config=WorkerConfig(emit="every"), observers=[metrics])  # fmt: skip
    worker.run(timeout=0.2)
    assert worker.stats.samples == before.n_samples + after.n_samples
    assert worker.sequencer.stats.restarts == 4 and worker.sequencer.stats.duplicates == 0
    assert metrics.registry.get_sample_value("harstream_device_restarts_total") == 4
    got: dict[str, list] = {}  # per device, in order: the first stream's labels, then the new
    for m in MemorySource(out, ["har.predictions"]).poll(10_000_000, 0):
        p = json.loads(m.value)
        steps = p["steps"]["probs"] if "steps" in p else [p["probs"]]
        got.setdefault(p["device"], []).extend(steps)
    first, then = (predict_streams(model, [s.values for s in d.streams]) for d in (before, after))
    for old, new, *probs in zip(before.streams, after.streams, first, then, strict=True):
        mine = np.array(got[new.device])
        assert len(mine) == len(old.values) + len(new.values)
        np.testing.assert_allclose(mine, np.concatenate(probs), atol=1e-5)
