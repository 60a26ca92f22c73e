"""The worker's block lane (records decoded and sequenced as arrays) decides exactly as its
per-record lane, whatever the fleet: other rates and units, duplicates, reordering, drops,
gaps, corrupt records, a device sending several records in one poll."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from pipeline.worker.sequencer import Sequencer, SequencerConfig
from streams.codecs import AutoCodec, CodecConfig, Decoded
from streams.datasets import SyntheticConfig, simulate
from streams.datasets.resample import at_rate
from streams.exceptions import DecodeError
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay
from streams.units import Units


class OneByOne(AutoCodec):
    """Every record decoded on its own: no block, so the worker takes the per-record lane."""

    def decode_block(self, data):
        out = []
        for item in data:
            try:
                out.append(self.decode(item))
            except DecodeError as err:
                out.append(err)
        return Decoded(None, np.zeros(0, np.int64), out)


def _fleets(gap_prob: float):
    """50 Hz devices in g, 100 Hz devices in m/s² and deg/s, 25 Hz devices: one topic."""
    plain = simulate(SyntheticConfig(devices=24, duration_s=12, seed=5, gap_prob=gap_prob))
    theirs = Units("m/s2", "deg/s")
    scale = theirs.scale_from(Units(), plain.channels)
    fast = simulate(SyntheticConfig(devices=12, duration_s=12, seed=6))
    fast = replace(fast, rate_hz=100.0, units=theirs, streams=tuple(
        replace(at_rate(s, 100.0), device=f"si-{s.device}", values=at_rate(s, 100.0).values * scale)
        for s in fast.streams))  # fmt: skip
    slow = simulate(SyntheticConfig(devices=12, duration_s=12, seed=7))
    slow = replace(slow, rate_hz=25.0, streams=tuple(
        replace(at_rate(s, 25.0), device=f"slow-{s.device}") for s in slow.streams))  # fmt: skip
    return plain, fast, slow


@pytest.fixture(scope="module")
def served():
    plain = _fleets(0.0)[0]
    spec = ModelSpec(setup="stream", cell="lstm", hidden=8)
    meta = ModelMeta(spec, plain.channels, plain.activities, 50.0, (0.0,) * 6, (0.5,) * 6, 64, 1)
    return build_model(spec, meta), meta


MESSY = FaultConfig(duplicate=0.05, reorder=0.05, drop=0.01, corrupt=0.01)


def _serve(served, codec_class, per_record: int, faults: FaultConfig | None):
    """What a worker emits for the fleets, sorted; nothing waits for the clock (a held record
    waits for later records or the final flush; the worker stops when it has read every
    message), which a busy machine would otherwise change from one lane to the other."""
    model, meta = served
    bus, out = MemoryBus(partitions=3, capacity=1_000_000), MemoryBus(1, 10_000_000)
    for k, data in enumerate(_fleets(0.002 if faults else 0.0)):
        replay(data, MemorySink(bus), ReplayConfig(samples_per_record=per_record,
                                                   faults=replace(faults or FaultConfig(),
                                                                  seed=k)))  # fmt: skip
    codec = codec_class(CodecConfig(channels=6, max_samples=per_record))
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out),
                    ServingModel.load(model, meta, "m@v1"), codec=codec,
                    config=WorkerConfig(emit="every", min_dwell=10, max_records=200,
                                        sequencer=SequencerConfig(hold_s=3600.0)))  # fmt: skip
    worker.run(count=sum(bus.end_offsets("sensor.raw").values()))  # no idle polls to count
    messages = []
    for m in MemorySource(out, ["har.predictions", "har.events", "sensor.dlq"]).poll(10**7, 0):
        message = json.loads(m.value)
        message.pop("latency_ms", None)
        messages.append(json.dumps(message, sort_keys=True))
    return worker, sorted(messages)


@pytest.mark.parametrize(
    ("per_record", "faults", "share"), [(10, MESSY, 0.1), (25, MESSY, 0.1), (25, None, 0.9)]
)
def test_the_block_lane_emits_what_the_per_record_lane_emits(
    served, per_record, faults, share, monkeypatch
):
    """``share``: of the samples, those that went the block's way at least."""
    one_by_one = _serve(served, OneByOne, per_record, faults)
    in_order = []  # the samples of runs made from a block
    take = Sequencer._in_order

    def spy(*args):
        runs = take(*args)
        in_order.append(sum(len(run.seqs) for run in runs))
        return runs

    monkeypatch.setattr(Sequencer, "_in_order", spy)
    blocks = _serve(served, AutoCodec, per_record, faults)
    (worker, got), (reference, expected) = blocks, one_by_one
    assert got == expected
    assert worker.stats.samples == reference.stats.samples > 0
    assert worker.stats.records == reference.stats.records
    assert worker.stats.rejected == reference.stats.rejected
    assert worker.sequencer.stats == reference.sequencer.stats
    assert sum(in_order) > share * worker.stats.samples
    if faults:  # the careful path had work to do
        seq = worker.sequencer.stats
        assert seq.duplicates and seq.gaps and worker.stats.rejected
