"""Malformed records through the real broker: a ``harstream run`` worker sends each to the
dead-letter topic with its reason, its original bytes and where it came from, counts it in
``/metrics``, and predicts the valid records of the same device around them as usual."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import numpy as np
import pytest
from kafka import KafkaProducer

from corpus import TINY_META_ARGS, bad_input, scrape, start_harstream, status_url, worker_toml
from models.io import save_model
from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.codecs import BinaryCodec, CodecConfig, JsonCodec
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.protocols import Source
from streams.record import Record

pytestmark = pytest.mark.kafka
DEVICE = "phone-7"
CASES = [  # (codec, reason) of each malformed record, in the order they are sent
    ("binary", "truncated"), ("binary", "bad_version"), ("json", "bad_version"),
    ("binary", "non_finite"), ("json", "non_finite"), ("binary", "oversize"),
    ("json", "oversize"), ("json", "invalid_json"), ("binary", "channel_mismatch"),
    ("json", "channel_mismatch"), ("json", "missing_field"), ("binary", "bad_magic"),
]  # fmt: skip


def _valid(i: int) -> Record:
    """The ``i``-th valid record of the device: 5 samples from sequence number 5 i on."""
    values = np.random.default_rng(i).normal(size=(5, 3)).astype(np.float32)
    return Record(DEVICE, 5 * i, 1_732_550_400_000 + 100 * i, 50.0, values)


def _drain(source: Source, count: int, timeout_s: float = 60.0) -> list:
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out += source.poll(1000, 0.5)
    return out


def test_malformed_records_land_in_the_dlq_with_their_reasons_between_valid_ones(
    kafka_bootstrap, kafka_client, unique_topic, tmp_path
):
    kafka = KafkaConfig(kafka_bootstrap, client=kafka_client)
    raw, preds, dlq = unique_topic("raw"), unique_topic("preds"), unique_topic("dlq")
    ensure_topics(kafka, [TopicSpec(raw, 3), TopicSpec(preds, 3), TopicSpec(dlq, 1)])
    spec = ModelSpec(setup="stream", cell="lstm", hidden=4)
    meta = ModelMeta(spec, **{**TINY_META_ARGS, "classes": ("SIT", "WALK"), "window": 16,
                              "stride": 1})  # fmt: skip
    model_path = save_model(build_model(spec, meta), meta, tmp_path / "m.keras")
    codec_config = CodecConfig(channels=3, activities=("SIT", "WALK"))  # the worker's limits

    # valid records of the device around every malformed one, all keyed by the device, so
    # they share a partition and its order; then a valid record without a key, and one whose
    # key names another device
    binary, as_json = BinaryCodec(codec_config), JsonCodec(codec_config)
    sends: list[tuple[str | None, bytes | None, bytes]] = []  # (reason, key, value)
    valid = [_valid(i) for i in range(len(CASES) + 3)]
    for i, (codec, reason) in enumerate(CASES):
        good = (binary if i % 2 else as_json).encode(valid[i])
        sends += [(None, DEVICE.encode(), good)]
        sends += [(reason, DEVICE.encode(), bad_input(codec, reason, codec_config))]
    sends += [(None, DEVICE.encode(), binary.encode(valid[len(CASES)]))]
    sends += [("missing_key", None, binary.encode(valid[len(CASES)]))]  # a copy, not keyed
    sends += [("key_mismatch", b"watch-1", binary.encode(valid[len(CASES) + 1]))]
    sends += [(None, DEVICE.encode(), binary.encode(valid[len(CASES) + 1]))]
    sends += [(None, DEVICE.encode(), as_json.encode(valid[len(CASES) + 2]))]
    assert all(value for _, _, value in sends)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                             max_request_size=4 * 1024 * 1024)  # fmt: skip
    where = [producer.send(raw, key=key, value=value).get(timeout=30) for _, key, value in sends]
    producer.close()

    config = tmp_path / "worker.toml"
    config.write_text(
        worker_toml(
            kafka_bootstrap,
            unique_topic,
            input_topic=raw,
            predictions_topic=preds,
            emit="every",
            dlq_topic=dlq,
            kafka={"client": kafka_client},
        )  # fmt: skip
    )
    log = tmp_path / "worker.log"
    worker = start_harstream(log, "run", "--config", str(config), "--stream-model",
                             str(model_path), "--http-port", "0")  # fmt: skip
    try:
        bad = [(reason, key, value, md) for (reason, key, value), md in zip(sends, where,
               strict=True) if reason is not None]  # fmt: skip
        reader = clients.source(kafka, [dlq], SourceConfig(group_id=unique_topic("r")))
        letters = [json.loads(m.value) for m in _drain(reader, len(bad))]
        reader.close()
        expected = {(DEVICE, seq) for r in valid for seq in r.sequence().tolist()}
        reader = clients.source(kafka, [preds], SourceConfig(group_id=unique_topic("r")))
        predicted: Counter = Counter()
        deadline = time.monotonic() + 60
        while set(predicted) < expected and time.monotonic() < deadline:
            for m in reader.poll(1000, 0.5):
                p = json.loads(m.value)
                predicted.update(
                    (p["device"], s) for s in p.get("steps", {"seq": [p["seq"]]})["seq"]
                )
        reader.close()

        by_position = {(d["partition"], d["offset"]): d for d in letters}
        assert len(letters) == len(by_position) == len(bad), letters
        for reason, key, value, md in bad:
            letter = by_position[(md.partition, md.offset)]
            assert letter["reason"] == reason, (reason, letter)
            assert letter["topic"] == raw and letter["detail"]
            assert bytes.fromhex(letter["value_hex"]) == value
            assert letter["key"] == (key.decode() if key is not None else None)

        assert set(predicted) == expected and max(predicted.values()) == 1

        url, deadline, metrics = None, time.monotonic() + 30, {}
        want = Counter(reason for reason, *_ in bad)
        while time.monotonic() < deadline:
            url = url or status_url(log.read_text())
            metrics = scrape(url) if url else {}
            counted = {r: metrics.get(f'harstream_dead_letters_total{{reason="{r}"}}')
                       for r in want}  # fmt: skip
            if counted == dict(want):
                break
            time.sleep(0.5)
        assert counted == dict(want), metrics
        assert worker.poll() is None, log.read_text()[-2000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert worker.returncode == 0, log.read_text()[-2000:]
