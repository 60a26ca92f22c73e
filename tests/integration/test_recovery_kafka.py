"""Crash recovery on the real broker (issues #6 and #18): the HAPT test users replayed at full
speed into six partitions, served by ``harstream run`` processes of which one is killed
(``kill -9``) or stopped (SIGTERM) mid-stream. Three of the recordings come from devices at 100
and 200 Hz, resampled by the workers to the model's 50 Hz. The model's labels are decoded by
its HMM and emitted ``delay_ms = 1000`` late, the mean of the fixed-lag HMM smoother's and its
refiner's. Every device ends in the state an uninterrupted single worker leaves it in (the
resampler's, the HMM belief, the labels held back and the refiner's included), and every model
step but each device's last second (held back in its checkpoint) has a prediction equal to
that worker's (duplicates allowed after a crash, and they agree). The interrupted runs use each
client library; the reference uses kafka-python, so the confluent-kafka runs must also end in
kafka-python's states."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from corpus import model_steps, scrape, start_harstream, status_url
from models.hmm import Grammar
from models.io import save_model
from models.refine import refiner_channels
from models.refiner_runtime import LAG_KEY
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.state.checkpoint import DeviceState, decode_state
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import HAPT_TEST_USERS, load_uci_hapt
from streams.datasets.resample import at_rate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

pytestmark = [pytest.mark.kafka, pytest.mark.dataset]
PARTITIONS = 6
WAIT_S = 180.0
"""the longest any phase may take (start-up, all predictions out, a clean stop)"""


FASTER = {0: 100.0, 1: 100.0, 2: 200.0}
"""recordings (by position) sent by devices at another rate than the model's"""


@pytest.fixture(scope="module")
def hapt():
    data = load_uci_hapt().select_users(HAPT_TEST_USERS)
    streams = [at_rate(s, FASTER[i]) if i in FASTER else s for i, s in enumerate(data.streams)]
    return replace(data, streams=tuple(streams))


DELAY_MS, LAG = 1000.0, 50
"""the workers' delay, and the model steps it is at 50 Hz"""


@pytest.fixture(scope="module")
def model_path(hapt, tmp_path_factory) -> Path:
    """A small LSTM stream model with an HMM (decoding on, a lag temperature for
    :data:`DELAY_MS`) and a refiner of :data:`LAG`, randomly initialised: recovery must
    reproduce any weights."""
    k = len(hapt.activities)
    sticky = np.full((k, k), 0.05 / (k - 1)) + np.eye(k) * (0.95 - 0.05 / (k - 1))
    grammar = Grammar(tuple(map(tuple, sticky.tolist())), (1.0 / k,) * k, 0.5, True,
                      lags=((DELAY_MS, 0.3, float("nan"), float("nan")),))  # fmt: skip
    spec, small = ModelSpec(setup="stream", cell="lstm", hidden=16), ModelSpec(setup="stream")
    meta = ModelMeta(spec, hapt.channels, hapt.activities, hapt.rate_hz, (0.0, 0.0, 0.8, 0.0,
                     0.0, 0.0), (0.4,) * 3 + (0.5,) * 3, 128, 1, grammar=grammar)  # fmt: skip
    refiner = ModelMeta(replace(small, hidden=8), refiner_channels(hapt.activities),
                        hapt.activities, hapt.rate_hz, (-3.0,) * 2 * k, (3.0,) * 2 * k, 128, 64,
                        provenance={LAG_KEY: LAG})  # fmt: skip
    return save_model(build_model(spec, meta), meta, tmp_path_factory.mktemp("m") / "lstm.keras",
                      (build_model(refiner.spec, refiner), refiner))  # fmt: skip


class _Deployment:
    """Topics of its own (input, predictions, events, dead letters, state), a consumer group,
    and the ``harstream run`` workers serving them, each logging to a file; all of them (and
    the test's own producer and readers) on the Kafka client library ``client``."""

    def __init__(
        self, bootstrap: str, directory: Path, model_path: Path, data, client: str
    ) -> None:
        tag = f"t-recovery-{directory.name}-{uuid.uuid4().hex[:8]}"
        self.group = f"{tag}-group"
        self.directory, self.model_path, self.data = directory, model_path, data
        self.kafka = KafkaConfig(bootstrap, client=client)
        self.raw, self.preds, self.state = f"{tag}-raw", f"{tag}-preds", f"{tag}-state"
        ensure_topics(self.kafka, [TopicSpec(self.raw, PARTITIONS),
                                   TopicSpec(self.preds, PARTITIONS)])  # fmt: skip
        self.config = directory / "worker.toml"
        self.config.write_text(
            f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "{self.group}"\n'
            f'client = "{client}"\n'
            f'[worker]\ninput_topic = "{self.raw}"\npredictions_topic = "{self.preds}"\n'
            f'events_topic = "{tag}-events"\ndlq_topic = "{tag}-dlq"\nemit = "every"\n'
            f"delay_ms = {DELAY_MS}\n"
            f"max_records = 100\n"  # 2,500 samples a batch: several batches per checkpoint,
            f'[checkpoint]\ntopic = "{self.state}"\nevery_ms = 1000\n'  # so a kill lands between
        )
        self.workers: dict[str, subprocess.Popen] = {}
        self.ended: set[str] = set()
        """workers killed or stopped on purpose"""
        self.predictions = _Predictions(self.kafka, self.preds, data)

    def start(self, *names: str) -> None:
        """Start workers ``names`` and wait until each runs (its signal handlers are set)."""
        for name in names:
            self.workers[name] = start_harstream(
                self.directory / f"{name}.log", "run", "--config", str(self.config),
                "--stream-model", str(self.model_path), "--http-port", "0",
            )  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while not all(status_url(self.log(name)) for name in names):
            self.check_alive()
            assert time.monotonic() < deadline, f"{names} did not start\n{self.tails()}"
            time.sleep(0.2)

    def replay(self) -> int:
        """Send the whole dataset as fast as the producer goes; the samples sent."""
        sink = clients.sink(self.kafka)
        try:
            config = ReplayConfig(topic=self.raw, samples_per_record=25)
            return replay(self.data, sink, config).samples_sent
        finally:
            sink.close()

    def await_predictions(self, samples: int) -> None:
        """Read predictions until ``samples`` distinct model steps have one."""
        deadline = time.monotonic() + WAIT_S
        while self.predictions.predicted < samples:
            self.check_alive()
            assert time.monotonic() < deadline, (
                f"{self.predictions.predicted:,} of {samples:,} samples predicted after "
                f"{WAIT_S:.0f} s\n{self.tails()}"
            )
            self.predictions.read()

    def await_read_to_end(self, *names: str) -> None:
        """Wait until every input partition is read to its end: committed there (the group's
        offsets, read by a consumer that never joins), or owned by one of ``names`` with no
        lag. After a crash every prediction can be out (the dead worker sent them) while its
        successor still redoes the batches its last checkpoint missed, and only that redo
        brings the devices' states to the end."""
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KafkaTopicPartition

        parts = [KafkaTopicPartition(self.raw, p) for p in range(PARTITIONS)]
        consumer = KafkaConsumer(
            bootstrap_servers=self.kafka.bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
        )  # never joins
        lag = re.compile(r'harstream_consumer_lag_records\{partition="(\d+)"')
        deadline = time.monotonic() + WAIT_S
        try:
            while True:
                ends = consumer.end_offsets(parts)
                done = {tp.partition for tp in parts
                        if (consumer.committed(tp) or 0) >= ends[tp]}  # fmt: skip
                for name in names:
                    done |= {int(m[1]) for key, value in self.metrics(name).items()
                             if (m := lag.match(key)) and value == 0}  # fmt: skip
                if len(done) == PARTITIONS:
                    return
                self.check_alive()
                assert time.monotonic() < deadline, (
                    f"partitions {sorted(done)} of {PARTITIONS} read to their end after "
                    f"{WAIT_S:.0f} s\n{self.tails()}"
                )
                time.sleep(0.2)
        finally:
            consumer.close()

    def kill(self, name: str) -> None:
        """``kill -9``: no checkpoint, no commit, no goodbye to the group."""
        os.kill(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait(timeout=30)
        self.ended.add(name)

    def stop(self, *names: str) -> None:
        """SIGTERM ``names``; each must checkpoint, commit, leave and exit 0."""
        for name in names:
            self.ended.add(name)
            self.workers[name].send_signal(signal.SIGTERM)
        for name in names:
            try:
                code = self.workers[name].wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not stop within {WAIT_S:.0f} s\n{self.tails()}")
            assert code == 0, f"{name} exited with {code}\n{self.tails()}"
            assert "stopped: " in self.log(name), self.tails()

    def restored(self, *names: str) -> float:
        """Device states ``names`` restored on assignment, as their /metrics say."""
        return sum(self.metrics(name).get("harstream_restored_states_total", 0) for name in names)

    def busier(self, *names: str) -> tuple[str, str]:
        """Of two workers, the one with more records still to read, and the other; fails if
        neither has any left (a kill or stop then would hand nothing over)."""
        lag = "harstream_consumer_lag_records{"
        lags = {n: sum(v for k, v in self.metrics(n).items() if k.startswith(lag)) for n in names}
        busy, idle = sorted(names, key=lags.get, reverse=True)
        assert lags[busy] > 0, f"both workers read everything already: {lags}\n{self.tails()}"
        return busy, idle

    def metrics(self, name: str) -> dict[str, float]:
        return scrape(status_url(self.log(name)))

    def states(self) -> dict[str, DeviceState]:
        """The latest checkpoint of every device, from the state topic."""
        table = clients.table(self.kafka, self.state)
        try:
            return {k.decode(): decode_state(v) for k, v in table.read(range(PARTITIONS)).items()}
        finally:
            table.close()

    def check_alive(self) -> None:
        for name, process in self.workers.items():
            if name not in self.ended and process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}\n{self.tails()}")

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text()

    def tails(self) -> str:
        return "\n".join(f"--- {name}.log\n{self.log(name)[-3000:]}" for name in self.workers)

    def close(self) -> None:
        """End whatever still runs (after a failure) and the predictions reader."""
        self.predictions.close()
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Predictions:
    """Every model step's predicted probabilities, by the input sample it names, read from the
    predictions topic, with how often each was predicted and every repeat that disagreed with
    the first."""

    def __init__(self, kafka: KafkaConfig, topic: str, data) -> None:
        self.source = clients.source(kafka, [topic], SourceConfig(group_id=f"{topic}-reader"))
        starts = np.cumsum([0] + [s.n for s in data.streams])
        self.start = {s.device: int(a) for s, a in zip(data.streams, starts, strict=False)}
        assert all(np.array_equal(s.sequence(), np.arange(s.n)) for s in data.streams)
        self.probs = np.full((data.n_samples, len(data.activities)), np.nan, np.float32)
        self.count = np.zeros(data.n_samples, np.int32)
        self.wanted = np.zeros(data.n_samples, bool)
        """the samples a model step stands for (all of them at the model's rate), but for the
        last :data:`LAG` of each device, held back in its checkpoint when the workers stop"""
        for s in data.streams:
            self.wanted[self.start[s.device] + model_steps(s)[:-LAG]] = True
        self.expected = int(self.wanted.sum())
        self.predicted = 0
        self.disagreements: list[str] = []

    def read(self, timeout_s: float = 0.2) -> None:
        for msg in self.source.poll(2000, timeout_s):
            p = json.loads(msg.value)
            steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
            rows = self.start[p["device"]] + np.asarray(steps["seq"], np.int64)
            probs = np.asarray(steps["probs"], np.float32)
            again = self.count[rows] > 0
            if again.any():
                diff = np.abs(self.probs[rows[again]] - probs[again]).max(axis=1)
                for seq, d in zip(np.asarray(steps["seq"])[again][diff > 1e-5], diff[diff > 1e-5],
                                  strict=True):  # fmt: skip
                    self.disagreements.append(f"{p['device']} seq {seq}: repeat differs by {d}")
            self.probs[rows[~again]] = probs[~again]
            self.predicted += int(np.count_nonzero(~again))
            self.count[rows] += 1

    def close(self) -> None:
        self.source.close()


@pytest.fixture(scope="module")
def reference(kafka_bootstrap, hapt, model_path, tmp_path_factory):
    """One worker, never interrupted: its predictions and its devices' final states."""
    run = _Deployment(kafka_bootstrap, tmp_path_factory.mktemp("reference"), model_path, hapt,
                      "kafka-python")  # fmt: skip
    try:
        run.start("worker")
        assert run.replay() == hapt.n_samples
        run.await_predictions(run.predictions.expected)
        run.stop("worker")
        run.predictions.read(1.0)
    finally:
        run.close()
    got = run.predictions
    assert (got.count == got.wanted).all(), "the uninterrupted worker predicted twice or off-step"
    states = run.states()
    assert sorted(states) == sorted(s.device for s in hapt.streams)
    return run.predictions, states


def _assert_same_as_reference(run: _Deployment, reference) -> None:
    """Every sample predicted, any repeat equal to the first, all equal to the reference's;
    every device's final checkpoint equal to the reference's."""
    expected, expected_states = reference
    got = run.predictions
    assert got.disagreements == [], got.disagreements[:20]
    missing = int((got.wanted & (got.count == 0)).sum())
    assert missing == 0 and not (got.count[~got.wanted]).any(), f"{missing} steps never predicted"
    worst = np.abs(got.probs - expected.probs)[got.wanted].max(axis=1)
    assert worst.max() <= 1e-5, f"{int((worst > 1e-5).sum())} predictions differ, by {worst.max()}"
    states = run.states()
    assert sorted(states) == sorted(expected_states)
    for device, want in expected_states.items():
        have = states[device]
        fields = ("last_seq", "seen", "partition", "offset", "tracker", "model")
        assert [getattr(have, f) for f in fields] == [getattr(want, f) for f in fields], device
        assert (have.c is None) == (want.c is None)
        assert (have.resample is None) == (want.resample is None), device
        assert all(getattr(want, n) is not None for n in ("belief", "delayed", "refiner"))
        for name in ("h", "c", "ring", "resample", "belief", "delayed", "refiner"):
            if getattr(want, name) is not None:
                np.testing.assert_allclose(getattr(have, name), getattr(want, name), atol=1e-5,
                                           err_msg=f"{device}: {name}")  # fmt: skip


@pytest.fixture
def half_way(kafka_bootstrap, kafka_client, hapt, model_path, tmp_path):
    """Workers ``a`` and ``b`` in one group, the dataset replayed, 40 % of it predicted."""
    run = _Deployment(kafka_bootstrap, tmp_path, model_path, hapt, kafka_client)
    try:
        run.start("a", "b")
        assert run.replay() == hapt.n_samples
        run.await_predictions(int(0.4 * run.predictions.expected))
        yield run
    finally:
        run.close()


def test_a_killed_worker_is_replaced_and_the_result_equals_an_uninterrupted_run(
    reference, half_way, hapt
):
    run, at_kill = half_way, half_way.predictions.predicted
    victim, survivor = run.busier("a", "b")
    run.kill(victim)  # between two of its checkpoints (every 1 s): its latest batches are redone
    run.start("c")
    run.await_predictions(run.predictions.expected)
    run.await_read_to_end(survivor, "c")
    restored = run.restored(survivor, "c")
    run.stop(survivor, "c")
    run.predictions.read(1.0)
    assert at_kill < run.predictions.expected, "everything was predicted before the kill"
    assert restored > 0, run.tails()
    _assert_same_as_reference(run, reference)
    repeated = int((run.predictions.count > 1).sum())
    print(f"killed at {at_kill:,} of {run.predictions.expected:,} steps; {repeated:,} again")


def test_a_worker_stopped_mid_stream_hands_over_cleanly(reference, half_way, hapt):
    run, at_stop = half_way, half_way.predictions.predicted
    leaving, staying = run.busier("a", "b")
    run.stop(leaving)  # checkpoints, commits and leaves: the other restores and resumes at once
    run.await_predictions(run.predictions.expected)
    restored = run.restored(staying)
    run.stop(staying)
    run.predictions.read(1.0)
    assert at_stop < run.predictions.expected, "everything was predicted before the stop"
    assert restored > 0, run.tails()
    _assert_same_as_reference(run, reference)
    # a clean handover redoes nothing: every step was predicted exactly once
    got = run.predictions
    assert (got.count == got.wanted).all(), int((got.count > 1).sum())
