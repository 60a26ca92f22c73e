"""Replay: event-time interleaving, record cutting, faults counted, every sample accounted for."""

from __future__ import annotations

import numpy as np
import pytest

from streams.accounting import SampleLedger, compare_tallies
from streams.codecs import AutoCodec, CodecConfig
from streams.datasets.base import DeviceStream, StreamDataset
from streams.exceptions import ConfigError, DecodeError
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, plan_records, replay


def _dataset(devices=4, n=103, gap_at=None) -> StreamDataset:
    rng = np.random.default_rng(1)
    streams = []
    for d in range(devices):
        seq = np.arange(n, dtype=np.int64)
        if gap_at is not None:
            seq[gap_at:] += 7  # the device missed 7 samples
        streams.append(
            DeviceStream(
                device=f"dev-{d}",
                values=rng.normal(size=(n, 3)).astype(np.float32),
                labels=rng.integers(-1, 4, n).astype(np.int16),
                rate_hz=50.0,
                t0_ms=1_000_000 + d * 7,  # devices start a few ms apart
                user=d,
                seq=seq,
            )
        )
    return StreamDataset("test", ("x", "y", "z"), ("A", "B", "C", "D"), 50.0, tuple(streams))


def _consume(bus: MemoryBus):
    codec = AutoCodec(CodecConfig(channels=3))
    ledger, rejected, records = SampleLedger(), [], []
    for msg in MemorySource(bus, ["sensor.raw"]).poll(max_records=1_000_000, timeout_s=0):
        try:
            rec = codec.decode(msg.value)
        except DecodeError as err:
            rejected.append(err.reason)
            continue
        assert msg.key == rec.device.encode()
        ledger.add(rec)
        records.append(rec)
    return ledger, rejected, records


def test_plan_cuts_at_record_size_and_at_gaps():
    data = _dataset(devices=1, n=103, gap_at=60)
    plan = plan_records(data, 25)
    assert list(zip(plan.start.tolist(), plan.stop.tolist(), strict=True)) == [
        (0, 25), (25, 50), (50, 60), (60, 85), (85, 103),
    ]  # fmt: skip
    assert plan.t0_ms[3] == pytest.approx(1_000_000 + 67 * 20.0)


def test_clean_replay_interleaves_in_event_time_and_delivers_everything():
    data = _dataset()
    bus = MemoryBus(partitions=1, capacity=10_000)
    report = replay(data, MemorySink(bus), ReplayConfig(samples_per_record=10))
    ledger, rejected, records = _consume(bus)
    assert rejected == []
    assert report.samples_sent == data.n_samples == report.expected_samples
    t0 = [r.t0_ms for r in records]
    assert t0 == sorted(t0)  # one partition: the send order is the event-time order
    assert compare_tallies(report.expected, ledger.tallies()) == []
    first = next(r for r in records if r.device == "dev-2")
    np.testing.assert_array_equal(first.labels, data.streams[2].labels[:10])


def test_faults_are_counted_and_accounting_still_adds_up():
    data = _dataset(devices=6, n=400)
    faults = FaultConfig(drop=0.1, duplicate=0.1, reorder=0.1, nan_burst=0.05, corrupt=0.05, seed=3)
    bus = MemoryBus(partitions=2, capacity=10_000)
    report = replay(data, MemorySink(bus), ReplayConfig(samples_per_record=8, faults=faults))
    ledger, rejected, records = _consume(bus)
    f = report.faults
    assert min(f["dropped"], f["duplicated"], f["reordered"], f["nan_bursts"], f["corrupted"]) > 0
    assert len(rejected) == report.invalid_sent >= f["nan_bursts"] + f["corrupted"]
    assert "non_finite" in rejected
    assert report.records_sent == len(plan_records(data, 8)) - f["dropped"] + f["duplicated"]
    assert compare_tallies(report.expected, ledger.tallies()) == []
    assert report.expected_samples < data.n_samples  # dropped and invalid samples are missing
    out_of_order = sum(
        1
        for a, b in zip(records, records[1:], strict=False)
        if a.device == b.device and b.seq < a.seq
    )
    assert out_of_order > 0


def test_clock_skew_moves_event_time_not_sequence():
    data = _dataset(devices=3)
    bus = MemoryBus(partitions=1)
    report = replay(
        data,
        MemorySink(bus),
        ReplayConfig(samples_per_record=103, faults=FaultConfig(clock_skew_ms=5000, seed=1)),
    )
    _, _, records = _consume(bus)
    assert report.faults["skewed_devices"] == 3
    assert {r.seq for r in records} == {0}
    assert any(abs(r.t0_ms - s.t0_ms) > 0 for r, s in zip(records, data.streams, strict=True))


def test_speed_paces_the_replay():
    data = _dataset(devices=1, n=50)  # 1 s of samples
    report = replay(data, MemorySink(MemoryBus()), ReplayConfig(samples_per_record=5, speed=4.0))
    assert 0.2 <= report.duration_s < 1.0  # about (45 samples / 50 Hz) / 4


def test_json_codec_and_progress():
    seen = []
    bus = MemoryBus(partitions=1)
    report = replay(
        _dataset(devices=2, n=20),
        MemorySink(bus),
        ReplayConfig(samples_per_record=4, codec="json"),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    ledger, rejected, _ = _consume(bus)
    assert rejected == [] and compare_tallies(report.expected, ledger.tallies()) == []
    assert seen[-1] == (10, 10)


@pytest.mark.parametrize("bad", [{"drop": 1.5}, {"corrupt": -0.1}, {"clock_skew_ms": -1}])
def test_invalid_fault_config(bad):
    with pytest.raises(ConfigError):
        FaultConfig(**bad)


def test_invalid_replay_config():
    with pytest.raises(ConfigError):
        ReplayConfig(samples_per_record=0)
    with pytest.raises(ConfigError):
        ReplayConfig(speed=0)
