"""Metrics agree with what a real worker did; the status server's metrics and probes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from corpus import bad_input, sample_record
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.observability.metrics import BulkHistogram, TrainerMetrics, WorkerMetrics, combined
from pipeline.observability.probes import worker_checks
from pipeline.observability.report import BatchReport, Detections
from pipeline.observability.server import HttpConfig, StatusServer
from pipeline.serving import ServingModel
from pipeline.trainer.gate import Verdict
from pipeline.worker import Worker, WorkerConfig
from streams.codecs import BinaryCodec, CodecConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay


@pytest.fixture(scope="module")
def served():
    """A worker (stream + window model) that ran a fleet with a few malformed records."""
    data = simulate(SyntheticConfig(devices=12, duration_s=8, seed=3))
    mean = tuple(float(v) for v in np.concatenate([s.values for s in data.streams]).mean(0))
    models = []
    for setup, window in (("stream", 64), ("window", 32)):
        spec = ModelSpec(setup=setup, cell="gru", hidden=8, next_step=setup == "stream")
        meta = ModelMeta(spec, data.channels, data.activities, 50.0, mean, (0.5,) * 6, window, 16)
        models.append(ServingModel.load(build_model(spec, meta), meta, f"{setup}@v1"))
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=5))
    three = CodecConfig(channels=3, max_samples=64, activities=("SIT", "WALK"))
    bad = [bad_input("binary", r, three) for r in ("bad_version", "bad_magic")]
    bad += [bad_input("json", "invalid_json", three), BinaryCodec(three).encode(sample_record())]
    for value in bad:  # the last one has 3 channels, not 6
        bus.put("sensor.raw", b"phone-7", value, 1.0)
    good = BinaryCodec(CodecConfig()).encode(sample_record(device="phone-7", channels=6))
    bus.put("sensor.raw", None, good, 1.0)
    bus.put("sensor.raw", b"other", good, 1.0)
    metrics = WorkerMetrics()
    config = WorkerConfig(emit="every_k", every_k=5)
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), *models, config=config,
                    observers=[metrics])  # fmt: skip
    worker.run(timeout=0.2)
    return worker, metrics


def _value(metrics, name, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_counters_agree_with_the_worker(served):
    worker, m = served
    stats = worker.stats
    assert _value(m, "harstream_messages_total") == stats.messages > 0
    assert _value(m, "harstream_records_total") == stats.records
    assert _value(m, "harstream_samples_total") == stats.samples
    for reason, n in stats.rejected.items():
        assert _value(m, "harstream_dead_letters_total", reason=reason) == n
    assert set(stats.rejected) == {"bad_version", "bad_magic", "invalid_json", "channel_mismatch",
                                   "missing_key", "key_mismatch"}  # fmt: skip
    activities = worker.stream_model.meta.classes
    sample = sum(_value(m, "harstream_predictions_total", kind="sample", activity=a)
                 for a in activities)  # fmt: skip
    window = sum(_value(m, "harstream_predictions_total", kind="window", activity=a)
                 for a in activities)  # fmt: skip
    assert sample == stats.predictions and window == stats.window_predictions > 0
    changes = sum(_value(m, "harstream_activity_changes_total", activity=a) for a in activities)
    assert changes == stats.events
    assert _value(m, "harstream_active_devices") == len(worker.store) == 12
    assert _value(m, "harstream_event_to_prediction_seconds_count") == len(stats.latency_ms)
    assert _value(m, "harstream_anomaly_score_count") > 0
    assert _value(m, "harstream_step_duration_seconds_count") > 0
    # the worker read everything: no lag left on any partition it owns
    lags = [s for f in m.registry.collect() if f.name == "harstream_consumer_lag_records"
            for s in f.samples]  # fmt: skip
    assert len(lags) == 3 and all(s.value == 0 for s in lags)


def test_decode_errors_are_the_dead_letters_that_failed_to_decode(served):
    worker, m = served
    keyed = ("missing_key", "key_mismatch")
    decode = {r: n for r, n in worker.stats.rejected.items() if r not in keyed}
    for reason, n in decode.items():
        assert _value(m, "harstream_decode_errors_total", reason=reason) == n
    assert _value(m, "harstream_decode_errors_total", reason="missing_key") == 0


def test_bulk_histogram_matches_prometheus_histogram_semantics():
    m = WorkerMetrics(process=False)
    h: BulkHistogram = m.latency
    h.observe_many(np.array([0.001, 0.01, 0.02, 7.0, 100.0, np.nan]))
    r = m.registry
    assert r.get_sample_value("harstream_event_to_prediction_seconds_bucket", {"le": "0.005"}) == 1
    assert r.get_sample_value("harstream_event_to_prediction_seconds_bucket", {"le": "0.01"}) == 2
    assert r.get_sample_value("harstream_event_to_prediction_seconds_bucket", {"le": "+Inf"}) == 5
    assert r.get_sample_value("harstream_event_to_prediction_seconds_count") == 5
    assert r.get_sample_value("harstream_event_to_prediction_seconds_sum") == pytest.approx(107.031)


def test_the_detector_s_scores_flagged_windows_and_threshold_are_exported():
    m = WorkerMetrics(process=False)
    m.observe(BatchReport(1))  # no detector yet
    assert _value(m, "harstream_detector_score_count") == 0
    score = np.array([0.005, 0.03, 0.3, 0.7, 3.0, 200.0, np.nan])
    first = np.arange(7) * 10
    detections = Detections([f"d{i}" for i in range(7)], first, first + 9, first * 20.0, score,
                            score > 0.6, 0.6, "s2s@v1")  # fmt: skip
    m.observe(BatchReport(2, detections=detections))
    assert _value(m, "harstream_detector_score_bucket", le="0.01") == 1
    assert _value(m, "harstream_detector_score_bucket", le="0.5") == 3
    assert _value(m, "harstream_detector_score_bucket", le="100.0") == 5
    assert _value(m, "harstream_detector_score_bucket", le="+Inf") == 6  # not the NaN
    assert _value(m, "harstream_detector_score_sum") == pytest.approx(204.035)
    assert _value(m, "harstream_detector_flagged_total") == 3
    assert _value(m, "harstream_detector_threshold") == 0.6
    assert _value(m, "harstream_anomaly_score_count") == 0  # the stream model's, not these
    swapped = Detections(["d0"], np.array([70]), np.array([79]), np.array([1580.0]),
                         np.array([9.0]), np.array([True]), 0.8, "s2s@v2")  # fmt: skip
    m.observe(BatchReport(3, detections=swapped))
    assert _value(m, "harstream_detector_flagged_total") == 4
    assert _value(m, "harstream_detector_score_count") == 7
    assert _value(m, "harstream_detector_threshold") == 0.8
    text = m.exposition().decode()
    assert "# HELP harstream_detector_score The seq2seq anomaly detector's score" in text
    assert "# HELP harstream_anomaly_score The stream model's next-step prediction error" in text


def test_trainer_metrics_count_verdicts_by_reason():
    m = TrainerMetrics(process=False)
    m.retrained("drift", 12.0, Verdict(True, "better by", 0.9, 0.8, 50, "better"))
    m.retrained("windows", 3.0, Verdict(False, "not better", 0.7, 0.9, 50, "not_better"))
    r = m.registry
    assert r.get_sample_value("harstream_trainer_runs_total", {"trigger": "drift"}) == 1
    assert r.get_sample_value("harstream_trainer_promotions_total") == 1
    assert r.get_sample_value("harstream_trainer_rejections_total", {"reason": "not_better"}) == 1
    assert r.get_sample_value("harstream_trainer_candidate_accuracy_ratio") == 0.7
    assert r.get_sample_value("harstream_trainer_champion_accuracy_ratio") == 0.9
    assert r.get_sample_value("harstream_trainer_training_duration_seconds_count") == 2


def test_combined_exposition_has_no_repeated_series():
    text = combined(WorkerMetrics(), TrainerMetrics(process=False)).exposition().decode()
    series = [line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))
    assert "process_cpu_seconds_total" in series


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_status_server_serves_metrics_and_probes(served):
    worker, m = served
    config = HttpConfig(port=0)
    health, ready = worker_checks(worker, config)
    server = StatusServer(config, m, health, ready).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        status, body = _get(server.url + "metrics")
        assert status == 200 and b"harstream_samples_total" in body
        status, body = _get(server.url + "healthz")
        assert status == 200 and json.loads(body)["checks"] == {"loop_turning": True}
        status, body = _get(server.url + "readyz")
        checks = json.loads(body)["checks"]
        assert status == 200 and all(checks.values()) and "caught_up" in checks
        worker.lag = {next(iter(worker.assigned)): config.ready_max_lag + 1}  # fall behind
        status, body = _get(server.url + "readyz")
        assert status == 503 and json.loads(body)["checks"]["caught_up"] is False
        assert _get(server.url + "nothing")[0] == 404
    finally:
        server.close()


def test_a_port_in_use_is_a_clear_error():
    from pipeline.exceptions import ConfigError

    first = StatusServer(HttpConfig(port=0), WorkerMetrics(process=False), dict).start()
    try:
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            StatusServer(HttpConfig(port=first.port), WorkerMetrics(process=False), dict).start()
    finally:
        first.close()
