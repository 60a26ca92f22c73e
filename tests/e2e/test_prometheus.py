"""A real Prometheus server scrapes a real ``harstream run`` worker during a replay over the real
broker; its HTTP API then reports the sample and prediction counts the replay implies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from corpus import status_url, worker_toml
from pipeline.demo_models import STREAM_FILE
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_sink import KafkaSink
from streams.replay import ReplayConfig, replay

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
EVERY_K = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _wait(what: str, check, timeout_s: float, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (value := check()) is not None:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def _query(prom: str, expr: str) -> float | None:
    """The value of a scalar PromQL query (None while Prometheus has no sample)."""
    body = _get_json(f"{prom}api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_worker_counts_that_match_the_replay(
    kafka_bootstrap, unique_topic, tmp_path
):
    binary = shutil.which("prometheus")
    assert binary, "the Debian package prometheus is missing: `make test` installs it"
    kafka = KafkaConfig(kafka_bootstrap)
    raw = unique_topic("raw")
    ensure_topics(kafka, [TopicSpec(raw, 3)])
    data = simulate(SyntheticConfig(devices=25, duration_s=20, seed=21))

    worker_log = tmp_path / "worker.log"
    config = tmp_path / "worker.toml"
    config.write_text(
        worker_toml(
            kafka_bootstrap,
            unique_topic,
            f"[http]\nport = {_free_port()}",
            input_topic=raw,
            predictions_topic=unique_topic("p"),
            emit="every_k",
            every_k=EVERY_K,
        )  # fmt: skip
    )
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config),
             "--stream-model", str(STREAM_FILE)],
            stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    prometheus = None
    try:
        url = _wait("the worker's status server", lambda: status_url(worker_log.read_text()), 90,
                    worker_log)  # fmt: skip
        target = urllib.parse.urlsplit(url).netloc
        prom_port = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
            f"  - job_name: harstream-worker\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        with (tmp_path / "prometheus.log").open("w") as log:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=log,
            )  # fmt: skip
        prom = f"http://127.0.0.1:{prom_port}/"
        _wait("Prometheus to scrape the worker",
              lambda: _query(prom, 'up{job="harstream-worker"}') == 1.0 or None,
              60, tmp_path / "prometheus.log")  # fmt: skip

        sink = KafkaSink(kafka)
        report = replay(data, sink, ReplayConfig(topic=raw, samples_per_record=10))
        sink.close()
        expected_predictions = sum(len(s.values) // EVERY_K for s in data.streams)

        def scraped(expr: str, want: float):
            return lambda: (_query(prom, expr) == want) or None

        _wait(f"Prometheus to see {report.samples_sent} samples",
              scraped("harstream_samples_total", report.samples_sent), 120,
              worker_log)  # fmt: skip
        assert report.samples_sent == data.n_samples
        assert _query(prom, "harstream_records_total") == report.records_sent
        _wait(f"Prometheus to see {expected_predictions} predictions",
              scraped('sum(harstream_predictions_total{kind="sample"})', expected_predictions),
              30)  # fmt: skip
        assert _query(prom, "harstream_active_devices") == len(data.streams)
        assert _query(prom, "sum(harstream_dead_letters_total)") in (None, 0.0)
        assert _query(prom, "harstream_event_to_prediction_seconds_count") > 0
        quantile = "histogram_quantile(0.99, harstream_event_to_prediction_seconds_bucket)"
        assert _query(prom, quantile) > 0
        info = _get_json(f"{prom}api/v1/query?query=harstream_model_info")["data"]["result"]
        assert info[0]["metric"]["version"] == f"file:{STREAM_FILE}"
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, worker_log.read_text()[-2000:]
