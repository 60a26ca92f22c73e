"""Everything that shapes a live label, over the real broker: a worker serving a 3-model
ensemble with HMM decoding and ``delay_ms = 1000`` (the fixed-lag HMM smoother, and the mean of
its labels with a refiner's, :mod:`models.refine`) emits, for the UCI HAPT test recordings, the
labels of the offline evaluation of the same configuration (``models.smoothing.as_served``, and
``models.refine.refined``: what the model report scores)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

from models.refine import REFINER, RefineConfig, RefinerData, fit_refiner, refined, refiner_inputs
from models.smoothing import as_served
from models.spec import ModelSpec
from models.training import TrainConfig, predict_streams, split_recordings, train_stream_model
from pipeline.serving import ServingModel
from pipeline.trainer.modelling import recordings
from pipeline.worker import Worker, WorkerConfig
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import load_uci_hapt, split_by_user
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = [pytest.mark.kafka, pytest.mark.dataset]

DELAY_MS, LAG = 1000.0, 50


@pytest.fixture(scope="module")
def labeller():
    """A small ensemble of 3 trained briefly on a few HAPT training users, its grammar on and
    smoothing delayed labels (the test is about serving, not about whether decoding helps this
    model), and the test users."""
    hapt = load_uci_hapt()
    train, test = split_by_user(hapt)
    recs, users = recordings(replace(train, streams=train.streams[:8]))
    spec = ModelSpec(setup="stream", cell="gru", layers=1, hidden=16, members=3)
    cfg = TrainConfig(epochs=1, tbptt_steps=64, chunks_per_lane=2, lanes=8, seed=1)
    result = train_stream_model(spec, recs, users, channels=hapt.channels,
                                classes=hapt.activities, rate_hz=50.0, config=cfg)  # fmt: skip
    lags = ((DELAY_MS, 0.1, float("nan"), float("nan")),)
    meta = replace(result.meta, grammar=replace(result.meta.grammar, enabled=True, lags=lags))
    data = RefinerData.of(result.model, meta.grammar,
                          *split_recordings(recs, users, result.validation_users))  # fmt: skip
    small = RefineConfig(spec=replace(REFINER, hidden=8), chunk=256, warm=16, epochs=1)
    refiner, refiner_meta, _ = fit_refiner(data, meta.classes, 50.0, LAG, small)
    return result.model, meta, test, (refiner, refiner_meta)


@pytest.mark.parametrize("refine", [False, True], ids=["smoother", "refined"])
def test_an_ensemble_decoded_and_delayed_over_kafka_labels_as_the_offline_evaluation(
    kafka_bootstrap, kafka_client, unique_topic, labeller, refine
):
    model, meta, test, refiner = labeller
    kafka = KafkaConfig(kafka_bootstrap, client=kafka_client)
    raw, preds, events, dlq = (unique_topic(t) for t in ("raw", "preds", "events", "dlq"))
    ensure_topics(kafka, [TopicSpec(raw, 6), TopicSpec(preds, 6), TopicSpec(events, 1),
                          TopicSpec(dlq, 1)])  # fmt: skip
    sink = clients.sink(kafka)
    report = replay(test, sink, ReplayConfig(topic=raw, samples_per_record=50))
    sink.close()
    config = WorkerConfig(input_topic=raw, predictions_topic=preds, events_topic=events,
                          dlq_topic=dlq, emit="every", delay_ms=DELAY_MS,
                          refine=refine)  # fmt: skip
    source = clients.source(kafka, [raw], SourceConfig(group_id=unique_topic("workers")))
    serving = ServingModel.load(model, meta, "hapt@v1", refiner=refiner)
    worker = Worker(source, clients.sink(kafka), serving, config=config)
    assert len(worker.stream_model.runtime.members) == 3 and worker.stream_model.decoder is not None
    assert worker.delay.filter is not None  # the fixed-lag HMM smoother
    assert (worker.stream_model.refiner is not None) == refine
    worker.run(timeout=10)  # until the topic is drained (a rebalance may deliver some twice)
    assert worker.stats.samples == test.n_samples and report.samples_sent == test.n_samples
    worker.store.evict(worker.store.devices())  # the recordings end: the last second goes out
    worker.sink.close()
    source.close()

    reader = clients.source(kafka, [preds], SourceConfig(group_id=unique_topic("reader")))
    got: dict[str, dict[int, tuple[list[float], str]]] = {}
    deadline = time.monotonic() + 120
    while sum(map(len, got.values())) < test.n_samples and time.monotonic() < deadline:
        for m in reader.poll(max_records=5000, timeout_s=0.5):
            p = json.loads(m.value)
            assert p["delay_ms"] == DELAY_MS and p["model"] == "hapt@v1"
            steps = p.get("steps") or {
                "seq": [p["seq"]],
                "probs": [p["probs"]],
                "activity": [meta.classes.index(p["activity"])],
            }
            for seq, probs, top in zip(steps["seq"], steps["probs"], steps["activity"],
                                       strict=True):  # fmt: skip
                assert seq not in got.setdefault(p["device"], {}), "a sample labelled twice"
                got[p["device"]][seq] = probs, top
    reader.close()
    probs = predict_streams(model, [s.values for s in test.streams])
    offline = as_served(probs, meta.grammar, DELAY_MS)
    if refine:  # the report's mixed labels: the mean of the refiner's and the smoother's
        mine = refined(refiner[0], refiner_inputs(probs, meta.grammar), LAG)
        offline = [(a + b) / 2 for a, b in zip(mine, offline, strict=True)]
    worst, flipped = 0.0, 0
    for stream, expected in zip(test.streams, offline, strict=True):
        mine = got[stream.device]
        assert sorted(mine) == stream.sequence().tolist(), stream.device
        probs = np.array([mine[s][0] for s in sorted(mine)])
        worst = max(worst, float(np.abs(probs - expected).max()))
        top2 = np.sort(expected, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2e-5  # a near-tie may go either way within 1e-5
        labels = np.array([mine[s][1] for s in sorted(mine)])
        flipped += int((labels != expected.argmax(1))[clear].sum())
    assert worst < 1e-5, worst
    assert flipped == 0
    assert len(got) == len(test.streams) > 10
