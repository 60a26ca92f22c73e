"""The worker's output messages: which steps are emitted, and the wire format."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np

from pipeline.worker.emission import (
    chosen_steps,
    dead_letter,
    encode,
    event_message,
    latency_ms,
    sample_messages,
)
from streams.protocols import Message


def test_chosen_steps_follow_the_emission_policy():
    changed = np.array([3])
    assert chosen_steps("every", 25, 0, 4, changed).tolist() == [0, 1, 2, 3]
    # every k-th sample of the device's whole stream, whatever the batch boundaries
    assert chosen_steps("every_k", 5, 3, 10, changed).tolist() == [1, 6]
    assert chosen_steps("every_k", 5, 0, 4, changed).tolist() == []
    assert chosen_steps("on_change", 5, 0, 10, changed).tolist() == [3]


def test_sample_messages_cover_the_run_and_name_the_last_step():
    run = SimpleNamespace(device="d1", seqs=np.arange(100, 110), times_ms=np.arange(10) * 20.0,
                          kafka_ts_ms=float("nan"))  # fmt: skip
    probs = np.tile([[0.25, 0.75]], (10, 1)).astype(np.float32)
    top = probs.argmax(axis=1)
    anomaly = np.linspace(0, 0.9, 10)
    (message,) = sample_messages(run, np.array([4, 9]), probs, top, anomaly, ("A", "B"), "m@v1",
                                 7, 0.0)  # fmt: skip
    assert (message["seq_first"], message["seq_last"], message["seq"]) == (100, 109, 109)
    assert message["activity"] == "B" and message["batch"] == 7 and message["model"] == "m@v1"
    assert message["steps"]["seq"] == [104, 109] and message["latency_ms"] is None
    assert message["anomaly"] == 0.9
    assert json.loads(encode(message)) == message


def test_events_dead_letters_and_latency():
    assert event_message("d", None, "WALKING", 5, 100.0, "v")["from"] is None
    msg = Message("sensor.raw", 2, 41, b"d", b"\x00\x01", 0)
    envelope = dead_letter(msg, "bad_magic", "not a record")
    assert envelope["value_hex"] == "0001" and envelope["key"] == "d" and envelope["offset"] == 41
    assert latency_ms(1500.0, 1000.0) == 500.0 and latency_ms(1.0, math.nan) is None
