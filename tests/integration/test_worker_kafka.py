"""The worker over the real broker: thousands of interleaved devices, predictions equal to the
offline Keras model's, with duplicates and reordering injected by the replay."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.training import predict_streams
from models.zoo import build_model
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import FaultConfig, ReplayConfig, replay

pytestmark = pytest.mark.kafka


def test_worker_predictions_over_kafka_equal_offline_keras(
    kafka_bootstrap, kafka_client, unique_topic
):
    kafka = KafkaConfig(kafka_bootstrap, client=kafka_client)
    raw, preds, events, dlq = (unique_topic(t) for t in ("raw", "preds", "events", "dlq"))
    ensure_topics(kafka, [TopicSpec(raw, 6), TopicSpec(preds, 6), TopicSpec(events, 1),
                          TopicSpec(dlq, 1)])  # fmt: skip
    data = simulate(SyntheticConfig(devices=2000, duration_s=3, seed=8, start_jitter_s=1.0))
    spec = ModelSpec(setup="stream", cell="lstm", layers=2, hidden=16)
    mean = tuple(float(v) for v in np.concatenate([s.values for s in data.streams]).mean(0))
    meta = ModelMeta(spec, data.channels, data.activities, 50.0, mean, (0.5,) * 6, 128, 1)
    model = build_model(spec, meta)

    sink = clients.sink(kafka)
    faults = FaultConfig(duplicate=0.05, reorder=0.05, seed=4)
    report = replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10, faults=faults))
    sink.close()
    assert report.faults["duplicated"] > 100 and report.faults["reordered"] > 100

    config = WorkerConfig(input_topic=raw, predictions_topic=preds, events_topic=events,
                          dlq_topic=dlq, emit="every")  # fmt: skip
    source = clients.source(kafka, [raw], SourceConfig(group_id=unique_topic("workers")))
    worker = Worker(source, clients.sink(kafka), ServingModel.load(model, meta, "lstm@v1"),
                    config=config)  # fmt: skip
    worker.run(count=report.records_sent, timeout=60)
    worker.sink.close()
    source.close()
    assert worker.stats.messages == report.records_sent
    assert worker.stats.samples == data.n_samples

    reader = clients.source(kafka, [preds], SourceConfig(group_id=unique_topic("reader")))
    got: dict[str, dict[int, list[float]]] = {}
    deadline = time.monotonic() + 120
    while sum(map(len, got.values())) < data.n_samples and time.monotonic() < deadline:
        for m in reader.poll(max_records=5000, timeout_s=0.5):
            p = json.loads(m.value)
            assert p["model"] == "lstm@v1" and m.key == p["device"].encode()
            for seq, probs in zip(p["steps"]["seq"] if "steps" in p else [p["seq"]],
                                  p["steps"]["probs"] if "steps" in p else [p["probs"]],
                                  strict=True):  # fmt: skip
                assert seq not in got.setdefault(p["device"], {})
                got[p["device"]][seq] = probs
    reader.close()
    offline = predict_streams(model, [s.values for s in data.streams])
    worst = 0.0
    for stream, probs in zip(data.streams, offline, strict=True):
        mine = got[stream.device]
        assert sorted(mine) == stream.sequence().tolist()
        worst = max(worst, float(np.abs(np.array([mine[s] for s in sorted(mine)]) - probs).max()))
    assert worst < 1e-5, worst
