"""``harstream run`` as users start it: a separate process on the real broker, stopped by
SIGTERM, after which its predictions are on the topic and its offsets committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus import stream_model_file, worker_toml
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def test_run_process_predicts_and_stops_cleanly_on_sigterm(
    kafka_bootstrap, kafka_client, unique_topic, tmp_path
):
    kafka = KafkaConfig(kafka_bootstrap, client=kafka_client)
    raw, preds = unique_topic("raw"), unique_topic("preds")
    ensure_topics(kafka, [TopicSpec(raw, 3), TopicSpec(preds, 3)])
    data = simulate(SyntheticConfig(devices=30, duration_s=4, seed=9))
    model_path = stream_model_file(data, tmp_path / "m.keras")
    config = tmp_path / "worker.toml"
    config.write_text(
        worker_toml(
            kafka_bootstrap,
            unique_topic,
            input_topic=raw,
            predictions_topic=preds,
            kafka={"client": kafka_client},
        )
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config),
         "--stream-model", str(model_path), "--every-k", "20", "--http-port", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        sink = clients.sink(kafka)
        report = replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10))
        sink.close()
        reader = clients.source(kafka, [preds], SourceConfig(group_id=unique_topic("r")))
        expected = data.n_samples // 20 - len(data.streams)
        got, steps, deadline = [], 0, time.monotonic() + 90
        while steps < expected and time.monotonic() < deadline:
            got += [json.loads(m.value) for m in reader.poll(1000, 0.5)]
            steps = sum(len(p["steps"]["seq"]) if "steps" in p else 1 for p in got)
        # ``expected`` is a lower bound: the worker is through once predictions stop coming
        while (more := reader.poll(1000, 2.0)) and time.monotonic() < deadline:
            got += [json.loads(m.value) for m in more]
        reader.close()
        assert steps >= expected and {p["model"] for p in got} == {f"file:{model_path}"}
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-2000:]
    if f"{report.samples_sent:,} samples" not in err:  # processed everything before stopping
        pytest.fail(f"{report.samples_sent:,} samples sent, the worker says:\n{err[-3000:]}")


def test_run_logs_json_lines(kafka_bootstrap, kafka_client, unique_topic, tmp_path):
    """``--log-format json``: every stderr line is one JSON object (TensorFlow's start-up lines
    included), the start line carries the worker's settings as fields."""
    raw = unique_topic("raw")
    data = simulate(SyntheticConfig(devices=2, duration_s=2, seed=3))
    model_path = stream_model_file(data, tmp_path / "m.keras")
    config = tmp_path / "worker.toml"
    config.write_text(
        worker_toml(kafka_bootstrap, unique_topic, input_topic=raw, kafka={"client": kafka_client})
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--log-format", "json", "--config",
         str(config), "--stream-model", str(model_path), "--http-port", "0", "--max-seconds", "8"],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(REPO), "HARSTREAM_LOG_LEVEL": "info"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    by_message = {r["message"].split(":")[0]: r for r in records}
    started = by_message["harstream worker"]
    assert started["logger"] == "pipeline.cli.commands.run" and started["level"] == "INFO"
    assert started["bootstrap"] == kafka_bootstrap and started["topic"] == raw
    assert started["group"] and started["url"].startswith("http://")
    assert by_message["stopped"]["messages"] == 0
    assert by_message["partitions assigned"]["partitions"]  # all of the new topic's
