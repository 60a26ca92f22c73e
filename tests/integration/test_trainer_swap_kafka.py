"""Trainer and worker as separate processes on the real broker, during a full-speed replay: the
trainer retrains on the stream's labels and promotes, an operator rolls back and promotes again
(``harstream registry ... --announce``); the worker swaps each time between two batches and
predicts every sample exactly once. Everything runs on each Kafka client library in turn."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpus import dataset_slice, scrape, status_url, worker_toml
from models.registry import Registry
from pipeline import demo_models
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SLICE = 500  # samples per device sent in one burst (10 s of stream)
BURST_EVERY_S = 1.0  # once the trainer is stopped: the stream must outlast the slowest step
DEADLINE_S = 360  # a guard against a hang, not a speed target (CI machines are slow)


def _harstream(log: Path, *args: str) -> subprocess.Popen:
    """A harstream process whose stderr goes to ``log`` (a pipe nobody reads could fill up)."""
    with log.open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=ENV,
                                stderr=err, text=True)  # fmt: skip


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=ENV,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _tails(logs) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def _trainer_records(log: Path) -> float:
    """Records the trainer has read so far (-1 before its status server is up)."""
    url = status_url(log.read_text())
    return scrape(url).get("harstream_trainer_records_total", 0.0) if url else -1.0


class _Predictions:
    """Reads the predictions topic: every sample's version, and each batch's versions."""

    def __init__(self, kafka, topic, group) -> None:
        self.source = clients.source(kafka, [topic], SourceConfig(group_id=group))
        self.samples: dict[tuple[str, int], list[str]] = {}
        self.batches: dict[int, set[str]] = {}

    def read(self, timeout_s: float = 0.2) -> None:
        for msg in self.source.poll(5000, timeout_s):
            p = json.loads(msg.value)
            seqs = p["steps"]["seq"] if "steps" in p else [p["seq"]]
            for seq in seqs:
                self.samples.setdefault((p["device"], seq), []).append(p["model"])
            self.batches.setdefault(p["batch"], set()).add(p["model"])

    def versions(self) -> list[str]:
        """The versions served, in batch order, each change once."""
        order = [next(iter(v)) for _, v in sorted(self.batches.items()) if len(v) == 1]
        return [v for i, v in enumerate(order) if i == 0 or order[i - 1] != v]


def test_three_promotions_during_a_full_speed_replay_lose_and_repeat_nothing(
    kafka_bootstrap, kafka_client, unique_topic, tmp_path
):
    kafka = KafkaConfig(kafka_bootstrap, client=kafka_client)
    raw, preds, control = unique_topic("raw"), unique_topic("preds"), unique_topic("control")
    ensure_topics(kafka, [TopicSpec(raw, 6), TopicSpec(preds, 3), TopicSpec(control, 1)])
    registry = Registry(tmp_path / "registry")
    registry.register("har", demo_models.STREAM_FILE, training_data="demo fleet")
    registry.promote("har", 1)
    # phones carried up to 60 degrees off: the champion is worse on them, the trainer learns
    fleet = simulate(SyntheticConfig(devices=30, duration_s=900, orientation_jitter_deg=60,
                                     gap_prob=0.0, seed=31))  # fmt: skip
    (tmp_path / "worker.toml").write_text(
        worker_toml(
            kafka_bootstrap,
            unique_topic,
            input_topic=raw,
            predictions_topic=preds,
            emit="every",
            kafka={"client": kafka_client},
            extra=f'[model]\nregistry = "{registry.root}"\nname = "har"\n'
            f'control_topic = "{control}"\npoll_s = 5.0',  # announcements, not polls, swap
        )
    )
    (tmp_path / "trainer.toml").write_text(
        f'[kafka]\nbootstrap_servers = "{kafka_bootstrap}"\nclient = "{kafka_client}"\n'
        f'[trainer]\nregistry = "{registry.root}"\ngroup_id = "{unique_topic("t")}"\n'
        f'input_topic = "{raw}"\nlabels_topic = ""\ncontrol_topic = "{control}"\n'
        f'every_windows = 300\ninterval_s = ""\ndrift = false\nmin_windows = 240\nepochs = 4\n'
        f'tbptt_steps = 42\nstate_dir = "{tmp_path / "trainer"}"\n'
        f"[buffer]\nwindow = 128\n[labels]\nwindow = 128\nstride = 128\n"
        f"[gate]\nmargin = 0.0\nmin_holdout_windows = 40\n"
    )
    logs = tmp_path / "worker.log", tmp_path / "trainer.log"
    worker = _harstream(
        logs[0], "run", "--config", str(tmp_path / "worker.toml"), "--http-port", "0"
    )
    trainer = _harstream(
        logs[1], "trainer", "--config", str(tmp_path / "trainer.toml"), "--http-port", "0"
    )
    predictions = _Predictions(kafka, preds, unique_topic("r"))
    sink = clients.sink(kafka)
    announce = ["--root", str(registry.root), "--announce", kafka_bootstrap,
                "--control-topic", control, "--kafka-client", kafka_client]  # fmt: skip
    sent, start, plan, step, seen, burst_at = 0, 0, {}, "await training", 0, 0.0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while step != "done":
            if time.monotonic() > deadline or start >= fleet.streams[0].n:
                pytest.fail(f"stuck at {step!r} after {start} samples per device, served "
                            f"{predictions.versions()}\n{_tails(logs)}")  # fmt: skip
            assert worker.poll() is None, _tails(logs)
            # the next burst, as fast as the producer goes, once the worker is nearly through
            # and, while it trains, the trainer too (else the worker would use the stream up)
            if len(predictions.samples) > sent - 2 * SLICE * 30 and (
                _trainer_records(logs[1]) >= (sent - SLICE * 30) / 25
                if step == "await training"
                else time.monotonic() - burst_at > BURST_EVERY_S
            ):
                part = dataset_slice(fleet, start, start + SLICE)
                config = ReplayConfig(topic=raw, samples_per_record=25)
                sent += replay(part, sink, config).samples_sent
                start, burst_at = start + SLICE, time.monotonic()
            predictions.read()
            served = predictions.versions()
            if step == "await training" and len(served) >= 2:  # the trainer promoted: stop it
                trainer_metrics = scrape(status_url(logs[1].read_text()))
                trainer.send_signal(signal.SIGTERM)
                assert trainer.wait(timeout=90) == 0, _tails(logs)
                plan["trained"] = f"har@{registry.get('har', 'champion').label}"
                step = "roll back"
            elif step == "roll back" and served[-1] == plan["trained"]:
                out = _cli("registry", "rollback", "har", *announce)  # an operator rolls back
                plan["rolled_back"], seen = f"har@{out.split('now ')[1][:5]}", len(served)
                step = "promote"
            elif step == "promote" and len(served) > seen and served[-1] == plan["rolled_back"]:
                _cli("registry", "promote", "har", plan["trained"].split("@")[1], *announce)
                seen, step = len(served), "await promotion"  # ... and forward again
            elif step == "await promotion" and len(served) > seen:
                _cli("registry", "promote", "har", "v0001", *announce)  # the third promotion
                seen, step = len(served), "await third"
            elif step == "await third" and len(served) > seen and served[-1] == "har@v0001":
                step = "done"
        while len(predictions.samples) < sent:  # the worker catches up with the last burst
            assert time.monotonic() < deadline
            predictions.read(0.5)
        predictions.read(1.0)
        worker_metrics = scrape(status_url(logs[0].read_text()))
    finally:
        sink.close()
        predictions.source.close()
        for process in (worker, trainer):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (worker, trainer):
            process.wait(timeout=60)
    assert worker.returncode == 0 and trainer.returncode == 0, _tails(logs)
    served = predictions.versions()
    assert served[0] == "har@v0001" and plan["trained"] != "har@v0001"
    assert served[-3:] == [plan["rolled_back"], plan["trained"], "har@v0001"], served
    assert len(served) >= 5, served  # promoted, rolled back, promoted, promoted
    trained = registry.get("har", plan["trained"].split("@")[1])
    assert trained.lineage["parent"] is not None and trained.metrics["gate"]["promote"]
    # every sample sent was predicted exactly once, by one version per batch
    expected = {(s.device, q) for s in fleet.streams for q in s.sequence()[:start].tolist()}
    assert set(predictions.samples) == expected
    assert all(len(v) == 1 for v in predictions.samples.values())
    assert all(len(v) == 1 for v in predictions.batches.values())
    # what their /metrics said agrees
    assert trainer_metrics["harstream_trainer_promotions_total"] >= 1
    runs = [v for k, v in trainer_metrics.items() if k.startswith("harstream_trainer_runs_total")]
    assert sum(runs) >= trainer_metrics["harstream_trainer_promotions_total"]
    assert worker_metrics["harstream_swaps_total"] == len(served) - 1
    assert worker_metrics[f'harstream_model_info{{slot="stream",version="{served[-1]}"}}'] == 1
    assert worker_metrics["harstream_samples_total"] == len(expected)
