"""End-to-end benchmark through the real broker: replay producer -> Kafka -> one worker -> Kafka.

1. Highest sustained rate: a fleet's records are put on the topic first, then one worker (one
   process, LSTM-64 stream model) consumes them from the start; samples/s = samples / time.
2. Latency at half that rate: a paced replay (another process) sends at half the measured rate
   while the worker runs; latency = prediction emitted - the record's broker timestamp (the
   producer's send time), p50 and p99.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.bench.timing import percentile
from pipeline.serving import ServingModel
from pipeline.settings import Settings
from pipeline.state.checkpoint import CheckpointConfig
from pipeline.wiring import build_worker
from pipeline.worker import Worker, WorkerConfig
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_sink import KafkaSink
from streams.replay import ReplayConfig, replay


def stream_model(hidden: int):
    """An LSTM stream model of the synthetic fleet's channels and classes, random weights
    (timing only)."""
    spec = ModelSpec(setup="stream", cell="lstm", hidden=hidden)
    channels = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    classes = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")
    meta = ModelMeta(spec, channels, classes, 50.0, (0.5, 0, 0, 0, 0, 0), (0.5,) * 6, 128, 1)
    return build_model(spec, meta), meta


def _worker(kafka: KafkaConfig, topic: str, model, meta) -> Worker:
    run = uuid.uuid4().hex[:8]
    config = WorkerConfig(
        input_topic=topic,
        predictions_topic=f"bench.predictions.{run}",
        events_topic=f"bench.events.{run}",
        dlq_topic=f"bench.dlq.{run}",
    )
    settings = Settings(kafka=replace(kafka, group_id=f"bench-{run}"), worker=config,
                        checkpoint=CheckpointConfig(enabled=False))  # fmt: skip
    return build_worker(settings, served=(ServingModel.load(model, meta, "bench@v1"), None))


def bench_e2e(
    bootstrap: str, devices: int = 10_000, seconds: float = 10.0, hidden: int = 64,
    samples_per_record: int = 50, latency_wall_s: float = 20.0,
) -> list[dict[str, object]]:  # fmt: skip
    kafka = KafkaConfig(bootstrap, client_id="harstream-bench")
    model, meta = stream_model(hidden)
    fleet = SyntheticConfig(devices=devices, duration_s=seconds, gap_prob=0.0, seed=3)
    data = simulate(fleet)

    # 1. throughput: topic filled first, then drained by one worker
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 6)])
    sink = KafkaSink(kafka)
    report = replay(data, sink, ReplayConfig(topic=topic, samples_per_record=samples_per_record))
    sink.close()
    worker = _worker(kafka, topic, model, meta)
    worker.step()  # join the group before the clock starts
    start = time.perf_counter()
    worker.run(count=report.records_sent, timeout=30)
    elapsed = time.perf_counter() - start
    stats = worker.stats
    worker.source.close()
    worker.sink.close()
    rate = stats.samples / elapsed
    rows = [
        {
            "bench": "e2e-throughput",
            "cell": "lstm",
            "hidden": hidden,
            "devices": devices,
            "samples": stats.samples,
            "samples_per_s": round(rate),
            "records_per_s": round(stats.messages / elapsed),
            "step_share": round(stats.step_s / elapsed, 3),
            "target_samples_per_s": devices * 50,
        }
    ]

    # 2. latency at half that rate, the producer in its own process
    half = rate / 2
    speed = half / (devices * fleet.rate_hz)
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 6)])
    duration = max(2.0, latency_wall_s * speed)
    with tempfile.TemporaryDirectory() as tmp:
        producer = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "replay", "--dataset", "synthetic",
             "--devices", str(devices), "--duration-s", f"{duration:.2f}", "--seed", "4",
             "--gap-prob", "0",
             "--to", f"kafka://{bootstrap}/{topic}", "--speed", f"{speed:.5f}",
             "--samples-per-record", str(samples_per_record), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        worker = _worker(kafka, topic, model, meta)
        deadline = time.monotonic() + latency_wall_s * 3 + 60
        while producer.poll() is None and time.monotonic() < deadline:
            worker.step()
        worker.run(timeout=3)
        producer.wait(timeout=60)
    lat = list(worker.stats.latency_ms)
    worker.source.close()
    worker.sink.close()
    rows.append(
        {
            "bench": "e2e-latency",
            "cell": "lstm",
            "hidden": hidden,
            "devices": devices,
            "samples_per_s": round(half),
            "samples": worker.stats.samples,
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(percentile(lat, 99), 1) if lat else None,
            "latency": "producer send -> prediction emitted (per record)",
        }
    )
    return rows
