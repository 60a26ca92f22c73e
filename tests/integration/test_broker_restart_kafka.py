"""Broker outages: a ``harstream run`` worker rides out a restart mid-run, and one started while
the broker is down waits for it; either way every sample sent gets its prediction."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from corpus import start_harstream, stream_model_file, wait_ready, worker_toml
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = pytest.mark.kafka


def _predicted(messages: list[dict]) -> set[tuple[str, int]]:
    """Every (device, seq) the prediction messages cover (``emit = "every"``)."""
    out = set()
    for p in messages:
        for seq in p["steps"]["seq"] if "steps" in p else [p["seq"]]:
            out.add((p["device"], seq))
    return out


def _topics(kafka, unique_topic) -> tuple[str, str]:
    """Input and prediction topics of the test's own: (raw, preds)."""
    raw, preds = unique_topic("raw"), unique_topic("preds")
    ensure_topics(kafka, [TopicSpec(raw, 3), TopicSpec(preds, 3)])
    return raw, preds


def _worker(kafka_broker, unique_topic, tmp_path, data, raw, preds, client):
    """A ``harstream run`` process reading ``raw``, writing ``preds``: (process, log)."""
    model_path = stream_model_file(data, tmp_path / "m.keras")
    config = tmp_path / "worker.toml"
    config.write_text(
        worker_toml(
            kafka_broker.bootstrap,
            unique_topic,
            checkpoint={"every_ms": 500},
            input_topic=raw,
            predictions_topic=preds,
            emit="every",
            kafka={"client": client},
        )  # fmt: skip
    )
    log = tmp_path / "worker.log"
    worker = start_harstream(log, "run", "--config", str(config), "--stream-model",
                             str(model_path), "--http-port", "0")  # fmt: skip
    return worker, log


def _assert_all_predicted(kafka, data, preds, worker, log) -> None:
    expected = {(s.device, int(q)) for s in data.streams for q in s.sequence()}
    reader = clients.source(kafka, [preds], SourceConfig(group_id=f"{preds}-reader"))
    got: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 120
    while not expected <= got and time.monotonic() < deadline:
        got |= _predicted([json.loads(m.value) for m in reader.poll(5000, 0.5)])
    reader.close()
    assert worker.poll() is None, "the worker died: " + log.read_text()[-3000:]
    missing = expected - got
    assert not missing, (
        f"{len(missing)} samples never predicted, e.g. {sorted(missing)[:5]}; worker log: "
        + log.read_text()[-3000:]
    )


def _stop(worker, log) -> str:
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    text = log.read_text()
    assert worker.returncode == 0, text[-2000:]
    assert "stopped:" in text and "Traceback" not in text, text[-2000:]
    return text


def test_broker_restart_mid_run_loses_nothing_and_the_worker_carries_on(
    kafka_broker, kafka_client, unique_topic, tmp_path
):
    kafka = KafkaConfig(kafka_broker.bootstrap, client=kafka_client)
    data = simulate(SyntheticConfig(devices=20, duration_s=24, seed=11))
    raw, preds = _topics(kafka, unique_topic)
    worker, log = _worker(kafka_broker, unique_topic, tmp_path, data, raw, preds, kafka_client)
    try:
        wait_ready(log, worker)  # assigned and caught up: the restart is mid-run
        # the producer sends in real time x4 (about 6 s) and keeps sending through the restart
        sink = clients.sink(kafka)
        sent: dict = {}
        producer = threading.Thread(
            target=lambda: sent.update(
                report=replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10, speed=4))
            )
        )
        producer.start()
        time.sleep(2.0)
        restart_started = time.monotonic()
        kafka_broker.restart()
        restart_s = time.monotonic() - restart_started
        assert producer.is_alive(), "the restart should happen while the producer sends"
        producer.join(timeout=180)
        assert not producer.is_alive() and "report" in sent
        sink.flush()  # every send (some retried across the restart) is acknowledged
        sink.close()
        assert sent["report"].samples_sent == data.n_samples
        _assert_all_predicted(kafka, data, preds, worker, log)
    finally:
        text = _stop(worker, log)
    assert "waiting for Kafka" not in text  # it was up before the restart
    print(f"broker restart took {restart_s:.1f} s")


def test_worker_started_during_an_outage_waits_for_the_broker(
    kafka_broker, kafka_client, unique_topic, tmp_path
):
    kafka = KafkaConfig(kafka_broker.bootstrap, client=kafka_client)
    data = simulate(SyntheticConfig(devices=4, duration_s=10, seed=12))
    raw, preds = _topics(kafka, unique_topic)
    kafka_broker.halt()
    try:
        worker, log = _worker(kafka_broker, unique_topic, tmp_path, data, raw, preds, kafka_client)
    except BaseException:
        kafka_broker.resume()
        raise
    try:
        deadline = time.monotonic() + 120
        while "waiting for Kafka" not in log.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker gave up: " + log.read_text()[-3000:]
            time.sleep(0.2)
        kafka_broker.resume()
        assert "waiting for Kafka" in log.read_text(), log.read_text()[-3000:]
        wait_ready(log, worker)
        sink = clients.sink(kafka)
        replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10))
        sink.close()
        _assert_all_predicted(kafka, data, preds, worker, log)
    finally:
        if not kafka_broker.running:
            kafka_broker.resume()
        _stop(worker, log)
