"""An anomaly detector (a seq2seq model) served beside the classifiers: one ``anomaly`` message
per due window, whose score equals the Keras model's offline score on the same window, whatever
the replay duplicates or reorders."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from models.seq2seq import anomaly_scores, build_seq2seq
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.exceptions import ConfigError
from pipeline.observability.report import BatchReport
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay

DETECTORS = {
    "reconstruct": ModelSpec(setup="seq2seq", task="reconstruct", cell="gru", hidden=8),
    "forecast-attention": ModelSpec(
        setup="seq2seq", task="forecast", horizon=6, hidden=8, attention=True
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def fleet():
    return simulate(SyntheticConfig(devices=12, duration_s=10, seed=3))


def _meta(spec, data, window, stride, **more) -> ModelMeta:
    values = np.concatenate([s.values for s in data.streams])
    mean, std = tuple(values.mean(0).tolist()), tuple((values.std(0) + 0.1).tolist())
    classes = () if spec.setup == "seq2seq" else data.activities
    return ModelMeta(spec, data.channels, classes, 50.0, mean, std, window, stride, **more)


def _classifier(data) -> ServingModel:
    meta = _meta(ModelSpec(setup="stream", cell="gru", hidden=4), data, 64, 1)
    return ServingModel.load(build_model(meta.spec, meta), meta, "har@v0001")


class _Reports:
    def __init__(self) -> None:
        self.reports: list[BatchReport] = []

    def observe(self, report: BatchReport) -> None:
        self.reports.append(report)


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_served_scores_equal_the_keras_models_offline_scores(fleet, kind):
    spec = DETECTORS[kind]
    meta = _meta(spec, fleet, window=40 - spec.horizon, stride=12)
    _, model = build_seq2seq(spec, meta)
    per_device = {s.device: s for s in fleet.streams}
    ends = {d: np.arange(meta.span - 1, s.n, meta.stride) for d, s in per_device.items()}
    offline = {d: anomaly_scores(model, meta, np.stack([s.values[e - meta.span + 1 : e + 1]
                                                         for e in ends[d]]))
               for d, s in per_device.items()}  # fmt: skip
    threshold = float(np.median(np.concatenate(list(offline.values()))))
    meta = replace(meta, threshold=threshold, threshold_quantile=0.5)
    detector = ServingModel.load(model, meta, "har-anomaly@v0003")

    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    faults = FaultConfig(duplicate=0.1, reorder=0.1, seed=4)
    replay(fleet, MemorySink(bus), ReplayConfig(samples_per_record=9, faults=faults))
    reports = _Reports()
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), _classifier(fleet),
                    anomaly_model=detector, config=WorkerConfig(), observers=[reports])  # fmt: skip
    worker.run(timeout=0.2)
    messages = [json.loads(m.value) for m in MemorySource(out, ["har.predictions"]).poll(
        max_records=10_000_000, timeout_s=0)]  # fmt: skip
    anomalies = [m for m in messages if m["kind"] == "anomaly"]

    for device, stream in per_device.items():
        mine = sorted((m for m in anomalies if m["device"] == device), key=lambda m: m["seq_last"])
        seqs = stream.sequence()
        assert [m["seq_last"] for m in mine] == seqs[ends[device]].tolist()  # each window once
        firsts = seqs[ends[device] - meta.span + 1]
        whole = seqs[ends[device]] - firsts == meta.span - 1  # no sample missing in the window
        assert whole.any()
        assert [m["seq_first"] for m, w in zip(mine, whole, strict=True) if w] == firsts[
            whole
        ].tolist()
        assert all(m["seq_first"] == m["seq_last"] - meta.span + 1 for m in mine)
        got = np.array([m["score"] for m in mine])
        np.testing.assert_allclose(got, offline[device], rtol=0, atol=1e-5)
        assert [m["anomalous"] for m in mine] == (offline[device] > threshold).tolist()
    assert {m["model"] for m in anomalies} == {"har-anomaly@v0003"}
    assert {m["threshold"] for m in anomalies} == {round(threshold, 6)}
    assert worker.stats.anomaly_windows == len(anomalies) == sum(map(len, ends.values()))
    assert worker.stats.anomalies == sum(m["anomalous"] for m in anomalies) > 0
    detections = [r.detections for r in reports.reports if r.detections is not None]
    assert sum(len(d.devices) for d in detections) == len(anomalies)
    assert int(sum(d.flagged.sum() for d in detections)) == worker.stats.anomalies


def test_a_detector_must_read_what_the_classifiers_read(fleet):
    spec = DETECTORS["reconstruct"]
    meta = _meta(spec, fleet, 32, 16, threshold=1.0, threshold_quantile=0.99)
    _, model = build_seq2seq(spec, meta)
    bus = MemoryBus(1)
    source, sink = MemorySource(bus, ["sensor.raw"]), MemorySink(MemoryBus(1))
    other_rate = ServingModel.load(model, replace(meta, rate_hz=100.0), "a@v1")
    with pytest.raises(ConfigError, match="at 100 Hz"):
        Worker(source, sink, _classifier(fleet), anomaly_model=other_rate)
    no_threshold = replace(meta, threshold=None, threshold_quantile=None)
    with pytest.raises(ConfigError, match="no anomaly threshold"):
        Worker(source, sink, _classifier(fleet), anomaly_model=ServingModel.load(model,
               no_threshold, "a@v1"))  # fmt: skip
    classifier = _classifier(fleet)
    with pytest.raises(ConfigError, match="not an anomaly detector"):
        Worker(source, sink, classifier, anomaly_model=classifier)
    with pytest.raises(ConfigError, match="needs a stream model, a window model"):
        Worker(source, sink, anomaly_model=ServingModel.load(model, meta, "a@v1"))


def test_a_new_detector_is_swapped_into_its_own_slot(fleet):
    spec = DETECTORS["reconstruct"]
    meta = _meta(spec, fleet, 32, 16, threshold=1.0, threshold_quantile=0.99)
    _, model = build_seq2seq(spec, meta)
    classifier = _classifier(fleet)
    first = ServingModel.load(model, meta, "d@v0001")
    worker = Worker(MemorySource(MemoryBus(1), ["sensor.raw"]), MemorySink(MemoryBus(1)),
                    classifier, anomaly_model=first)  # fmt: skip
    assert worker.store.config.ring >= meta.span
    assert worker.swap_in(ServingModel.load(model, meta, "d@v0002")) == "d@v0001"
    assert worker.anomaly_model.version == "d@v0002" and worker.stream_model is classifier
