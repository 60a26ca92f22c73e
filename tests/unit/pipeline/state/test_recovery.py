"""Checkpoints and restore: a worker that dies mid-stream is replaced by one that restores its
devices from the state table and resumes from the committed offsets; the result equals an
uninterrupted run's, state and predictions alike."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import replace

import numpy as np
import pytest

from models.hmm import Grammar, estimate
from models.refine import refiner_channels
from models.refiner_runtime import LAG_KEY
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.observability.metrics import WorkerMetrics
from pipeline.serving import ServingModel
from pipeline.state.checkpoint import (
    CheckpointConfig,
    Checkpointer,
    CheckpointError,
    DeviceState,
    decode_state,
    encode_state,
)
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource, MemoryTable
from streams.protocols import Message, TopicPartition
from streams.replay import FaultConfig, ReplayConfig, replay

TOPIC = "sensor.raw"


class LogSource:
    """A replayable source over fixed partition logs: reads from the committed offsets, tells
    its listener about assignments, and can be abandoned (a crash) or closed (a handover)."""

    def __init__(self, log: Mapping[int, list[Message]], committed: dict, listener=None,
                 partitions: Collection[int] | None = None) -> None:  # fmt: skip
        self.log, self.committed, self.listener = log, committed, listener
        self.owned = {TopicPartition(TOPIC, p) for p in (partitions or log)}
        self.position = {tp: committed.get(tp, 0) for tp in self.owned}
        self._told = False

    def poll(self, max_records: int = 500, timeout_s: float = 0.1) -> list[Message]:
        if not self._told:
            self._told = True
            if self.listener is not None:
                self.listener.on_assigned(set(self.owned))
        out: list[Message] = []
        while len(out) < max_records:
            took = False
            for tp in sorted(self.owned):
                at = self.position[tp]
                if at < len(self.log[tp.partition]) and len(out) < max_records:
                    out.append(self.log[tp.partition][at])
                    self.position[tp] = at + 1
                    took = True
            if not took:
                break
        return out

    def commit(self, offsets=None) -> None:
        self.committed.update(offsets or self.position)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def revoke(self, partitions: Collection[int]) -> None:
        gone = {TopicPartition(TOPIC, p) for p in partitions}
        self.listener.on_revoked(gone)
        self.owned -= gone

    def close(self) -> None:
        if self.listener is not None:
            self.listener.on_revoked(set(self.owned))
        self.owned = set()


STREAMS = ["device", "gravity", "decoded", "ensemble", "delayed", "smoothed", "refined"]


@pytest.fixture(scope="module", params=STREAMS)
def stream(request):
    """A fleet's messages in 3 partition logs, with duplicates and reordering, and a model (on
    the raw axes; in the gravity frame, whose filters are state too; decoded by an HMM, whose
    beliefs are state too; an ensemble of 3, whose members' states all are; decoded and served
    with ``delay_ms``, whose held-back labels are state too; or served with ``delay_ms`` by the
    fixed-lag HMM smoother, whose forward beliefs are too; and with a refiner mixed in, whose
    states are too), the delay and the refiner (its model and metadata, or None)."""
    data = simulate(SyntheticConfig(devices=18, duration_s=16, seed=4))
    bus = MemoryBus(partitions=3, capacity=1_000_000)
    faults = FaultConfig(duplicate=0.05, reorder=0.05, seed=3)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=8, faults=faults))
    log: dict[int, list[Message]] = {0: [], 1: [], 2: []}
    for m in MemorySource(bus, [TOPIC]).poll(10_000_000, 0):
        log[m.partition].append(m)
    frame = "gravity" if request.param == "gravity" else "device"
    spec = ModelSpec(setup="stream", cell="lstm", layers=2, hidden=8, next_step=True,
                     frame=frame, members=3 if request.param == "ensemble" else 1)  # fmt: skip
    inputs = 5 if frame == "gravity" else 6
    grammar = None
    if request.param in ("decoded", "delayed", "smoothed", "refined"):
        A, prior = estimate([s.labels for s in data.streams], len(data.activities))
        lags = ((300.0, 0.2, 0.5, 0.6),) if request.param in ("smoothed", "refined") else ()
        grammar = Grammar(tuple(map(tuple, A.tolist())), tuple(prior.tolist()), 0.5, True,
                          lags=lags)  # fmt: skip
    meta = ModelMeta(spec, data.channels, data.activities, 50.0, (0.0,) * inputs,
                     (0.5,) * inputs, 64, 1, grammar=grammar)  # fmt: skip
    delay_ms = 300.0 if request.param in ("delayed", "smoothed", "refined") else 0.0
    refiner = None
    if request.param == "refined":
        k, small = len(data.activities), ModelSpec(setup="stream", cell="gru", hidden=5)
        refiner_meta = ModelMeta(small, refiner_channels(data.activities), data.activities, 50.0,
                                 (-2.0,) * 2 * k, (2.0,) * 2 * k, 64, 32,
                                 provenance={LAG_KEY: 15})  # fmt: skip
        refiner = build_model(small, refiner_meta), refiner_meta
    return data, log, build_model(spec, meta), meta, delay_ms, refiner


def _worker(stream, source_log, committed, table, every_records=150, partitions=None,
            observers=()):  # fmt: skip
    data, log, model, meta, delay_ms, refiner = stream
    out = MemoryBus(1, 10_000_000)
    worker = Worker.__new__(Worker)  # the source needs the worker as its listener
    source = LogSource(log, committed, worker, partitions)
    checkpoints = Checkpointer(table, CheckpointConfig(every_ms=1e9, every_records=every_records))
    Worker.__init__(worker, source, MemorySink(out),
                    ServingModel.load(model, meta, "m@v1", refiner=refiner),
                    config=WorkerConfig(emit="every", max_records=40, delay_ms=delay_ms),
                    checkpoints=checkpoints,
                    observers=observers)  # fmt: skip
    return worker, out


def _predictions(out) -> dict[tuple[str, int], list[float]]:
    got: dict[tuple[str, int], list[float]] = {}
    for m in MemorySource(out, ["har.predictions"]).poll(10_000_000, 0):
        p = json.loads(m.value)
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        for seq, probs in zip(steps["seq"], steps["probs"], strict=True):
            key = (p["device"], seq)
            assert got.setdefault(key, probs) == probs, f"{key}: two different predictions"
    return got


def _final_states(worker) -> dict[str, dict[str, np.ndarray]]:
    runtime, decoder = worker.stream_model.runtime, worker.stream_model.decoder
    states = {d: runtime.get_state(worker.store.slot(d)) for d in worker.store.devices()}
    for device, state in states.items():
        slot = worker.store.slot(device)
        if decoder is not None:
            state["belief"] = decoder.get_state(slot)
        if worker.delay is not None:
            state["delayed"] = worker.delay.smoother.get_state(slot)
        if worker.delay is not None and worker.delay.filter is not None:
            state["smoother_belief"] = worker.delay.filter.get_state(slot)
        if worker.stream_model.refiner is not None:
            state["refiner"] = worker.stream_model.refiner.get_state(slot)
    return states


def test_a_replacement_worker_ends_where_an_uninterrupted_one_does(stream):
    data, log = stream[:2]
    total = sum(len(v) for v in log.values())
    whole, whole_out = _worker(stream, log, {}, MemoryTable())
    whole.run(timeout=0)
    expected_states, expected = _final_states(whole), _predictions(whole_out)
    held = 0 if whole.delay is None else whole.delay.lag * len(data.streams)
    assert len(expected) == data.n_samples - held  # with a delay, each device's last lag wait
    assert (whole.delay is not None) == (stream[4] > 0)
    assert (whole.stream_model.refiner is not None) == (stream[5] is not None)

    table, committed = MemoryTable(), {}
    first, first_out = _worker(stream, log, committed, table)
    first.run(count=total // 2)  # then it dies: no close, nothing more flushed or committed
    assert first.stats.checkpoints >= 2 and 0 < sum(committed.values()) < total
    metrics = WorkerMetrics(process=False)
    second, second_out = _worker(stream, log, committed, table, observers=[metrics])
    second.run(timeout=0)
    assert second.stats.restored_devices == len(data.streams)
    value = metrics.registry.get_sample_value
    assert value("harstream_restored_states_total") == len(data.streams)
    assert value("harstream_restore_duration_seconds_count") == 1
    assert value("harstream_checkpointed_states_total") > 0
    got = _predictions(first_out)
    for key, probs in _predictions(second_out).items():  # redelivered ones must agree
        assert got.setdefault(key, probs) == pytest.approx(probs, abs=1e-5), key
    assert set(got) == set(expected)
    for key, probs in expected.items():
        np.testing.assert_allclose(got[key], probs, atol=1e-5, err_msg=str(key))
    states = _final_states(second)
    assert set(states) == set(expected_states)
    for device, state in expected_states.items():
        for name, value in state.items():
            np.testing.assert_allclose(states[device][name], value, atol=1e-5, err_msg=device)


def test_a_revoked_partition_is_checkpointed_committed_and_forgotten(stream):
    data, log = stream[:2]
    table, committed = MemoryTable(), {}
    worker, _ = _worker(stream, log, committed, table, every_records=10**9)
    worker.run(count=300)
    assert not committed  # no checkpoint was due yet, so nothing was committed
    on_1 = {d for d in worker.store.devices()
            if worker.store.partition[worker.store.slot(d)] == 1}  # fmt: skip
    worker.source.revoke([1])
    assert on_1 and not on_1 & set(worker.store.devices())
    assert committed[TopicPartition(TOPIC, 1)] == worker.source.position[TopicPartition(TOPIC, 1)]
    saved = {decode_state(v).device: decode_state(v) for v in table.read([1]).values()}
    assert set(saved) == on_1 and all(s.partition == 1 for s in saved.values())
    assert worker.store.evictions == 0  # a handover is not an eviction
    # the partition's new owner picks up exactly there
    taker, _ = _worker(stream, log, committed, table, partitions=[1])
    taker.run(count=1)
    assert set(taker.store.devices()) >= on_1


def test_checkpoint_bytes_round_trip_and_bad_ones_are_refused():
    rng = np.random.default_rng(1)
    state = DeviceState("phone-é", "har@v0007", 1234, 1.7e12, 1240, 4, 99_999, (2, -1, 0, 2),
                        rng.normal(size=(2, 8)).astype(np.float32),
                        rng.normal(size=(128, 6)).astype(np.float32),
                        c=rng.normal(size=(2, 8)).astype(np.float32),
                        next=rng.normal(size=6).astype(np.float32),
                        resample=np.r_[0.5, 2**40 + 3, 1.7e12 + 0.25,
                                       rng.normal(size=8)])  # fmt: skip
    back = decode_state(encode_state(state))
    got = (back.device, back.model, back.last_seq, back.seen, back.partition, back.offset)
    assert got == ("phone-é", "har@v0007", 1234, 1240, 4, 99_999)
    assert back.tracker == (2, -1, 0, 2)
    for name in ("h", "c", "next", "ring", "resample"):
        np.testing.assert_array_equal(getattr(back, name), getattr(state, name))
    assert back.frame is None
    # a gravity-frame model: the next-step prediction is of its 5 features, its filters kept
    framed = replace(state, next=state.next[:5], frame=rng.normal(size=8).astype(np.float32))
    back = decode_state(encode_state(framed))
    for name in ("h", "c", "next", "ring", "resample", "frame"):
        np.testing.assert_array_equal(getattr(back, name), getattr(framed, name))
    assert back.device == "phone-é" and back.next.shape == (5,) and back.belief is None
    # a decoded model: the HMM's belief over its classes kept
    decoded = replace(framed, belief=rng.dirichlet(np.ones(12)).astype(np.float32))
    back = decode_state(encode_state(decoded))
    for name in ("h", "c", "next", "ring", "resample", "frame", "belief"):
        np.testing.assert_array_equal(getattr(back, name), getattr(decoded, name))
    with pytest.raises(CheckpointError):
        decode_state(encode_state(decoded)[:-4])
    # a worker with delay_ms: the samples whose labels it holds back kept, before the resampler's
    delayed = replace(decoded, delayed=rng.normal(size=(7, 16)))
    back = decode_state(encode_state(delayed))
    for name in ("h", "c", "next", "ring", "resample", "frame", "belief", "delayed"):
        np.testing.assert_array_equal(getattr(back, name), getattr(delayed, name))
    with pytest.raises(CheckpointError):
        decode_state(encode_state(replace(delayed, resample=None))[:-8])
    # a worker mixing in a refiner: its state kept
    refined = replace(delayed, refiner=rng.normal(size=100).astype(np.float32))
    back = decode_state(encode_state(refined))
    for name in ("h", "c", "next", "ring", "resample", "frame", "belief", "delayed", "refiner"):
        np.testing.assert_array_equal(getattr(back, name), getattr(refined, name))
    with pytest.raises(CheckpointError):
        decode_state(encode_state(replace(refined, resample=None))[:-4])
    gru = DeviceState("d", "m", 0, 0.0, 1, 0, 0, (0, 0, 0, 0), np.zeros((1, 4), np.float32),
                      np.zeros((8, 3), np.float32))  # fmt: skip
    assert (
        decode_state(encode_state(gru)).c is None
        and decode_state(encode_state(gru)).resample is None
    )
    data, plain = encode_state(state), encode_state(gru)
    no_flag = data[:3] + bytes([data[3] & ~4]) + data[4:]
    for bad in (data[:10], data[:-4], b"XX" + data[2:], data[:2] + b"\x09" + data[3:], no_flag,
                plain + b"\0" * 8):  # fmt: skip
        with pytest.raises(CheckpointError):
            decode_state(bad)


def test_an_evicted_device_s_checkpoint_is_deleted(stream):
    data, log = stream[:2]
    table, committed = MemoryTable(), {}
    worker, _ = _worker(stream, log, committed, table, every_records=10**9)
    worker.run(count=200)
    worker.checkpoint()
    device = worker.store.devices()[0]
    partition = int(worker.store.partition[worker.store.slot(device)])
    assert device.encode() in table.read([partition])
    worker.store.evict([device])  # as idleness or the device bound would
    worker.checkpoint()
    assert device.encode() not in table.read([partition])
