"""Real devices through the real broker: one ``harstream run`` serving a 50 Hz model to the same
UCI HAPT recordings sent at 50, 100, 200 and 20 Hz, in g and in m/s² and deg/s, and at 2 Hz
(turned away)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from corpus import worker_toml
from models.io import save_model
from models.spec import ModelSpec
from models.train_config import TrainConfig
from models.training import train_stream_model
from pipeline.trainer.modelling import recordings
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.datasets import load_uci_hapt
from streams.datasets.paths import default_path
from streams.datasets.resample import at_rate
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay
from streams.units import Units

pytestmark = [pytest.mark.kafka, pytest.mark.dataset]
REPO = Path(__file__).resolve().parents[2]
SAMPLES = 3000  # a minute of each test recording at 50 Hz
RATES = (50.0, 100.0, 200.0, 20.0)


@pytest.fixture(scope="module")
def hapt():
    if not default_path("uci_hapt_raw.npz").is_file():
        pytest.fail("uci_hapt_raw.npz not present: put the datasets in ../shared/data")
    return load_uci_hapt()


@pytest.fixture(scope="module")
def model_path(hapt, tmp_path_factory):
    """A small GRU trained briefly at 50 Hz on six training users."""
    recs, users = recordings(hapt.select_users([1, 3, 5, 6, 7, 8]))
    result = train_stream_model(
        ModelSpec(setup="stream", cell="gru", hidden=16), recs, users,
        channels=hapt.channels, classes=hapt.activities, rate_hz=50.0,
        config=TrainConfig(epochs=3, lanes=8, tbptt_steps=64, chunks_per_lane=4,
                           validation_users=0.0, seed=1),
    )  # fmt: skip
    return save_model(result.model, result.meta, tmp_path_factory.mktemp("m") / "gru.keras")


def _steps(predictions: list[dict]) -> dict[str, list[tuple[int, np.ndarray]]]:
    out: dict[str, list] = {}
    for p in predictions:
        steps = p.get("steps") or {"seq": [p["seq"]], "probs": [p["probs"]]}
        out.setdefault(p["device"], []).extend(
            (seq, np.array(probs)) for seq, probs in zip(steps["seq"], steps["probs"], strict=True)
        )
    return out


def test_one_worker_serves_every_rate_and_unit_like_the_model_s_own(
    kafka_bootstrap, unique_topic, tmp_path, hapt, model_path
):
    kafka = KafkaConfig(kafka_bootstrap)
    raw, preds, dlq = unique_topic("raw"), unique_topic("preds"), unique_topic("dlq")
    ensure_topics(kafka, [TopicSpec(raw, 3), TopicSpec(preds, 3), TopicSpec(dlq, 1)])
    sources = [replace(s, values=s.values[:SAMPLES], labels=s.labels[:SAMPLES])
               for s in hapt.select_users([2, 4]).streams]  # fmt: skip
    devices = [at_rate(s, r, f"{s.device}@{r:g}hz") for s in sources for r in RATES]
    devices += [at_rate(s, 2.0, f"{s.device}@2hz") for s in sources]
    si = Units("m/s2", "deg/s")
    scale = si.scale_from(Units(), hapt.channels)
    in_si = tuple(replace(s, device=f"{s.device}@si", values=s.values * scale) for s in sources)

    config = tmp_path / "worker.toml"
    topics = {"input_topic": raw, "predictions_topic": preds, "dlq_topic": dlq}
    config.write_text(worker_toml(kafka_bootstrap, unique_topic, emit="every", **topics))
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config),
             "--stream-model", str(model_path), "--http-port", "0"],
            stderr=out, stdout=out, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    try:
        sink = clients.sink(kafka)
        send = ReplayConfig(topic=raw, samples_per_record=25)
        replay(replace(hapt, streams=tuple(devices), rate_hz=50.0), sink, send)
        replay(replace(hapt, streams=in_si, units=si), sink, send)
        sink.close()
        served = [d for d in devices if d.rate_hz >= 10] + list(in_si)
        expected = sum(int((d.n - 3) * 50.0 / d.rate_hz) for d in served)  # filter delays
        reader = clients.source(kafka, [preds, dlq], SourceConfig(group_id=unique_topic("r")))
        got: dict[str, list] = {preds: [], dlq: []}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for m in reader.poll(2000, 0.5):
                got[m.topic].append(json.loads(m.value))
            if sum(len(v) for v in _steps(got[preds]).values()) >= expected:
                break
        while more := reader.poll(2000, 2.0):  # the rest, until nothing comes
            for m in more:
                got[m.topic].append(json.loads(m.value))
        reader.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    steps = _steps(got[preds])
    assert sum(len(v) for v in steps.values()) >= expected, log.read_text()[-3000:]

    for s in sources:
        own = {seq: probs for seq, probs in steps[f"{s.device}@50hz"]}
        assert list(own) == list(range(len(own)))
        for rate in RATES[1:]:
            mine = steps[f"{s.device}@{rate:g}hz"][: len(own)]
            # step k stands for the time of sample k at 50 Hz, and names the input sample then
            assert [seq for seq, _ in mine] == [int(k * rate / 50.0) for k in range(len(mine))]
            agree = np.mean([np.argmax(p) == np.argmax(own[k]) for k, (_, p) in enumerate(mine)])
            assert agree >= (0.99 if rate > 50 else 0.95), (s.device, rate, agree)
        si_steps = dict(steps[f"{s.device}@si"])
        assert si_steps.keys() == own.keys()
        np.testing.assert_allclose(np.stack([si_steps[q] for q in own]),
                                   np.stack(list(own.values())), atol=1e-4)  # fmt: skip
        assert f"{s.device}@2hz" not in steps
    turned_away = [d for d in got[dlq] if d["reason"] == "rate_unsupported"]
    assert len(turned_away) == sum(-(-d.n // 25) for d in devices if d.rate_hz < 10)
