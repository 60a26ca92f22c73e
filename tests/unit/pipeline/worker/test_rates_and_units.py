"""Devices at any rate and in any units, one model: the worker resamples and converts, and
turns away what it cannot serve."""

from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.datasets.resample import at_rate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import ReplayConfig, replay
from streams.units import Units

CONFIG = WorkerConfig(emit="every", min_dwell=10)


@pytest.fixture(scope="module")
def fleet():
    return simulate(SyntheticConfig(devices=6, duration_s=20, seed=11, gap_prob=0.0))


@pytest.fixture(scope="module")
def model(fleet):
    keras.utils.set_random_seed(3)
    spec = ModelSpec(setup="stream", cell="gru", layers=1, hidden=16)
    values = np.concatenate([s.values for s in fleet.streams])
    mean, std = tuple(values.mean(0).tolist()), tuple(values.std(0).tolist())
    meta = ModelMeta(spec, fleet.channels, fleet.activities, 50.0, mean, std, 128, 1)
    return build_model(spec, meta), meta


def _serve(data, model):
    keras_model, meta = model
    bus, out = MemoryBus(partitions=2, capacity=1_000_000), MemoryBus(1, 10_000_000)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=25))
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out),
                    ServingModel.load(keras_model, meta, "m@v1"), config=CONFIG)  # fmt: skip
    worker.run(timeout=0.2)
    topics: dict[str, list] = {}
    for m in MemorySource(out, ["har.predictions", "sensor.dlq"]).poll(10_000_000, 0):
        topics.setdefault(m.topic, []).append(json.loads(m.value))
    return worker, topics


def _steps(predictions):
    """Per device, every predicted step in order: (named input seq, probabilities)."""
    out: dict[str, list] = {}
    for p in predictions:
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        out.setdefault(p["device"], []).extend(zip(steps["seq"], steps["probs"], strict=True))
    return out


def test_a_100_hz_device_is_predicted_as_its_50_hz_twin(fleet, model):
    """Step k of the 100 Hz device is its sample 2k, low-passed (the mean of samples 2k-1 and
    2k): the probabilities differ only by that smoothing (an untrained model's top classes are
    too close to compare; the broker test compares the labels of a trained one)."""
    _, at50 = _serve(fleet, model)
    fast = replace(fleet, streams=tuple(at_rate(s, 100.0) for s in fleet.streams), rate_hz=100.0)
    worker, at100 = _serve(fast, model)
    slow, quick = _steps(at50["har.predictions"]), _steps(at100["har.predictions"])
    diffs = []
    for device, steps in slow.items():
        by_seq = {seq: np.array(probs) for seq, probs in steps}
        got = quick[device]
        assert [seq for seq, _ in got] == [2 * k for k in range(len(got))]  # step k: sample 2k
        assert len(got) >= len(steps) - 1
        diffs += [np.abs(np.array(probs) - by_seq[seq // 2]).max() for seq, probs in got]
    assert np.median(diffs) < 0.005 and np.max(diffs) < 0.1, (np.median(diffs), np.max(diffs))
    assert worker.stats.samples == fast.n_samples  # every input sample counted once


def test_devices_at_20_50_and_200_hz_share_a_worker_and_2_hz_is_turned_away(fleet, model):
    rates = [20.0, 50.0, 200.0, 2.0, 400.0, 500.0]
    mixed = replace(
        fleet, streams=tuple(at_rate(s, r) for s, r in zip(fleet.streams, rates, strict=True))
    )
    worker, topics = _serve(mixed, model)
    steps = _steps(topics["har.predictions"])
    for stream, rate in zip(mixed.streams, rates, strict=True):
        if 10.0 <= rate <= 400.0:
            expected = int((stream.n - 1) * 50.0 / rate) + 1
            assert abs(len(steps[stream.device]) - expected) <= 1, (rate, expected)
        else:
            assert stream.device not in steps
    assert {d["reason"] for d in topics["sensor.dlq"]} == {"rate_unsupported"}
    assert "serves 10 to 400 Hz" in topics["sensor.dlq"][0]["detail"]
    assert worker.stats.rejected["rate_unsupported"] == sum(
        -(-s.n // 25) for s, r in zip(mixed.streams, rates, strict=True) if r in (2.0, 500.0)
    )


def test_records_in_m_s2_and_deg_s_are_predicted_as_in_g_and_rad_s(fleet, model):
    _, in_g = _serve(fleet, model)
    theirs = Units("m/s2", "deg/s")
    scale = theirs.scale_from(Units(), fleet.channels)
    converted = replace(fleet, units=theirs, streams=tuple(
        replace(s, values=s.values * scale) for s in fleet.streams))  # fmt: skip
    _, in_si = _serve(converted, model)
    a, b = _steps(in_g["har.predictions"]), _steps(in_si["har.predictions"])
    assert a.keys() == b.keys()
    for device in a:
        assert [s for s, _ in a[device]] == [s for s, _ in b[device]]
        np.testing.assert_allclose([p for _, p in a[device]], [p for _, p in b[device]],
                                   atol=1e-4)  # fmt: skip
