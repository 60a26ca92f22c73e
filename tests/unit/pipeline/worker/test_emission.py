"""The worker's output messages: which steps are emitted, and the wire format."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np

from pipeline.worker.emission import (
    MAX_STEPS_PER_MESSAGE,
    chosen_steps,
    dead_letter,
    event_message,
    latency_ms,
    sample_payloads,
)
from streams.protocols import Message


def test_chosen_steps_follow_the_emission_policy():
    counts = np.array([4, 10, 4])
    steps, per_run = chosen_steps("every", 25, np.array([0, 3, 0]), counts)
    assert per_run.tolist() == [4, 10, 4] and steps[:6].tolist() == [0, 1, 2, 3, 0, 1]
    # every k-th sample of each device's whole stream, whatever the batch boundaries
    steps, per_run = chosen_steps("every_k", 5, np.array([0, 3, 1]), counts)
    assert per_run.tolist() == [0, 2, 1] and steps.tolist() == [1, 6, 3]


def _run(device: str, n: int, first_seq: int = 100, kafka_ts_ms: float = float("nan")):
    return SimpleNamespace(device=device, seqs=np.arange(first_seq, first_seq + n),
                           times_ms=np.arange(n) * 20.0, kafka_ts_ms=kafka_ts_ms)  # fmt: skip


def test_sample_payloads_are_the_documented_json_for_every_device_of_a_batch():
    runs = [_run("d1", 10), _run('d"2', 4, first_seq=7, kafka_ts_ms=0.0)]
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(2), size=14).astype(np.float32)
    top = probs.argmax(axis=1)
    anomaly = np.linspace(0, 1.3, 14)
    steps, per_run = np.array([4, 9, 3]), [2, 1]
    payloads = sample_payloads(runs, np.array([0, 10]), steps, per_run, probs, top, anomaly,
                               ("A", "B"), "m@v1", 7, 1000.0)  # fmt: skip
    first, second = (json.loads(p.data) for p in payloads)
    assert [(p.run, p.last) for p in payloads] == [(0, 9), (1, 3)]
    assert (first["seq_first"], first["seq_last"], first["seq"]) == (100, 109, 109)
    assert first["batch"] == 7 and first["model"] == "m@v1" and first["latency_ms"] is None
    assert first["activity"] == ("A", "B")[top[9]] and first["t_ms"] == 180.0
    assert first["steps"]["seq"] == [104, 109]
    assert first["steps"]["activity"] == top[[4, 9]].tolist()
    np.testing.assert_allclose(first["steps"]["probs"], probs[[4, 9]], atol=5e-7)
    assert first["probs"] == first["steps"]["probs"][-1]
    assert first["anomaly"] == payloads[0].anomaly == round(float(anomaly[9]), 4)
    # one step: no "steps"; a device id that needs escaping; latency from the broker time
    assert second["device"] == 'd"2' and "steps" not in second and second["seq"] == 10
    assert second["latency_ms"] == 1000.0 and second["anomaly"] == round(float(anomaly[13]), 4)
    documented = {"kind", "device", "model", "batch", "seq_first", "seq_last", "seq", "t_ms",
                  "activity", "probs", "latency_ms", "delay_ms", "steps", "anomaly"}  # fmt: skip
    assert set(first) == documented and first["delay_ms"] == 0


def test_a_long_run_is_split_into_messages_that_cover_it():
    n = 2 * MAX_STEPS_PER_MESSAGE + 3
    probs = np.full((n, 2), 0.5, np.float32)
    payloads = sample_payloads([_run("d", n)], np.array([0]), np.arange(n), [n], probs,
                               np.zeros(n, np.int64), None, ("A", "B"), "v", 1, 0.0)  # fmt: skip
    messages = [json.loads(p.data) for p in payloads]
    assert [len(m["steps"]["seq"]) for m in messages] == [500, 500, 3]
    assert [m["seq_first"] for m in messages] == [100, 600, 1100]
    assert messages[-1]["seq_last"] == 100 + n - 1 and "anomaly" not in messages[0]


def test_events_dead_letters_and_latency():
    assert event_message("d", None, "WALKING", 5, 100.0, "v")["from"] is None
    msg = Message("sensor.raw", 2, 41, b"d", b"\x00\x01", 0)
    envelope = dead_letter(msg, "bad_magic", "not a record")
    assert envelope["value_hex"] == "0001" and envelope["key"] == "d" and envelope["offset"] == 41
    assert latency_ms(1500.0, 1000.0) == 500.0 and latency_ms(1.0, math.nan) is None
