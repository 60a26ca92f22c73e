"""End-to-end benchmark through the real broker: replay producer -> Kafka -> worker(s) -> Kafka.

1. Highest sustained rate: a fleet's records are put on the topic first, then one worker (one
   process, LSTM-64 stream model) consumes them from the start; samples/s = samples / time,
   the median of ``drain_runs`` drains (each a new consumer group), each run's rate beside it.
   With ``workers`` > 1, that many worker processes in one consumer group drain the same
   topic; their combined rate = the samples after each one's first batch / (the end of the
   last batch - the end of the first over all of them).
2. Ceilings beside it, so the bottleneck shows: the input side alone (poll and decode every
   record) and the output side alone (build one batch's prediction messages for every device
   and send them, flushed), both in samples/s of input they stand for.
3. Latency at half the one-worker rate: once the worker has joined its group, a paced replay
   (another process, the same client library) sends at half the measured rate while the
   worker runs; latency = prediction emitted - the record's broker timestamp (the producer's
   send time), p50 and p99; the median of ``latency_runs`` runs, each run's p99 beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.bench.timing import percentile
from pipeline.serving import Served, ServingModel
from pipeline.settings import Settings
from pipeline.state.checkpoint import CheckpointConfig
from pipeline.swap.watcher import one_blas_thread
from pipeline.wiring import build_worker
from pipeline.worker import Worker, WorkerConfig
from pipeline.worker.emission import chosen_steps, sample_payloads
from pipeline.worker.state_store import StoreConfig
from streams import clients
from streams.admin import TopicSpec, ensure_topics
from streams.codecs import CodecConfig, make_codec
from streams.datasets import SyntheticConfig, simulate
from streams.kafka_config import KafkaConfig
from streams.kafka_sink import SinkConfig
from streams.kafka_source import SourceConfig
from streams.replay import ReplayConfig, replay

CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")


def stream_model(hidden: int):
    """An LSTM stream model of the synthetic fleet's channels and classes, random weights
    (timing only)."""
    spec = ModelSpec(setup="stream", cell="lstm", hidden=hidden)
    channels = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    meta = ModelMeta(spec, channels, CLASSES, 50.0, (0.5, 0, 0, 0, 0, 0), (0.5,) * 6, 128, 1)
    return build_model(spec, meta), meta


def _worker(kafka: KafkaConfig, topic: str, model, meta, devices: int,
            group: str | None = None) -> Worker:  # fmt: skip
    """A worker of the bench's model on ``topic``, its store sized for ``devices`` (as an
    operator sets ``[worker.store] initial_capacity`` for a known fleet: no growth on the way)."""
    run = uuid.uuid4().hex[:8]
    config = WorkerConfig(
        input_topic=topic,
        predictions_topic=f"bench.predictions.{run}",
        events_topic=f"bench.events.{run}",
        dlq_topic=f"bench.dlq.{run}",
        store=StoreConfig(initial_capacity=devices),
    )
    settings = Settings(kafka=replace(kafka, group_id=group or f"bench-{run}"), worker=config,
                        checkpoint=CheckpointConfig(enabled=False))  # fmt: skip
    return build_worker(settings, served=Served(ServingModel.load(model, meta, "bench@v1")))


def _drain(worker: Worker, settle_s: float = 3.0, wait_s: float = 120.0) -> dict[str, float]:
    """Run ``worker`` (one of a group) until its partitions are read to their end and stayed
    so for ``settle_s`` (a rebalance may still hand it more), or ``wait_s`` without a message;
    its samples, the wall-clock times at which its first and last busy batch ended, and the
    samples after the first (``timed``: the first batch's poll may hold the group's join)."""
    first = last = None
    timed = 0
    started = time.time()
    while True:
        n = worker.step()
        now = time.time()
        if n:
            if first is None:
                first, timed = now, -worker.stats.samples
            last = now
            continue
        done = first is not None and worker.lag is not None and not any(worker.lag.values())
        if (done and now - last > settle_s) or (first is None and now - started > wait_s):
            break
    return {"samples": worker.stats.samples, "messages": worker.stats.messages,
            "timed": worker.stats.samples + timed, "first": first or 0.0,
            "last": last or 0.0}  # fmt: skip


def _drain_all(kafka: KafkaConfig, topic: str, model, meta, records: int,
               devices: int) -> dict[str, float]:  # fmt: skip
    """One worker, in a new group, reads the filled ``topic`` from its start to its end."""
    worker = _worker(kafka, topic, model, meta, devices)
    worker.step()  # join the group before the clock starts
    start = time.perf_counter()
    worker.run(count=records, timeout=30)
    elapsed = time.perf_counter() - start
    stats = worker.stats
    worker.close()
    return {"samples": stats.samples, "messages": stats.messages, "seconds": elapsed,
            "step_s": stats.step_s}  # fmt: skip


def _join(worker: Worker, partitions: int, wait_s: float = 60.0) -> None:
    """Step ``worker`` until it owns ``partitions`` partitions of its (empty) topic."""
    deadline = time.monotonic() + wait_s
    while len(worker.assigned) < partitions:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker got {len(worker.assigned)} partitions in {wait_s} s")
        worker.step()


def _fill(kafka: KafkaConfig, data, samples_per_record: int) -> tuple[str, int]:
    """A new 6-partition topic holding the whole fleet; its name and record count."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 6)])
    sink = clients.sink(kafka)
    report = replay(data, sink, ReplayConfig(topic=topic, samples_per_record=samples_per_record))
    sink.close()
    return topic, report.records_sent


def _input_ceiling(kafka: KafkaConfig, topic: str, records: int, samples: int) -> float:
    """Samples/s of polling and decoding the filled topic, nothing else."""
    group = SourceConfig(group_id=f"bench-in-{uuid.uuid4().hex[:8]}")
    source = clients.source(kafka, [topic], group)
    codec = make_codec("auto", CodecConfig(channels=6))
    seen, start = 0, None
    while seen < records:
        batch = source.poll(5000, 1.0)
        start = start or (time.perf_counter() if batch else None)
        codec.decode_block([msg.value for msg in batch])
        seen += len(batch)
    elapsed = time.perf_counter() - start
    source.close()
    return samples / elapsed


def _output_ceiling(kafka: KafkaConfig, devices: int, samples_per_record: int,
                    compression: str | None = None, rounds: int = 5) -> float:  # fmt: skip
    """Samples/s of input whose predictions (every 25th sample, as the worker's default) can
    be built and sent (compressed with ``compression``): one batch of one record per device,
    flushed, ``rounds`` times."""
    topic = f"bench.predictions.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 6)])
    rng = np.random.default_rng(0)
    n = samples_per_record
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=devices * n).astype(np.float32)
    runs = [SimpleNamespace(device=f"device-{i:05d}", seqs=np.arange(n), kafka_ts_ms=0.0,
                            times_ms=np.arange(n) * 20.0) for i in range(devices)]  # fmt: skip
    starts = np.arange(devices) * n
    steps, per_run = chosen_steps("every_k", 25, np.zeros(devices), np.full(devices, n))
    sink, times = clients.sink(kafka, SinkConfig(compression_type=compression)), []
    for batch in range(rounds):
        started = time.perf_counter()
        payloads = sample_payloads(runs, starts, steps, per_run.tolist(), probs,
                                   probs.argmax(axis=1), None, CLASSES, "bench@v1", batch,
                                   time.time() * 1000.0)  # fmt: skip
        for p in payloads:
            sink.send(topic, runs[p.run].device.encode(), p.data)
        sink.flush()
        times.append(time.perf_counter() - started)
    sink.close()
    return devices * n / statistics.median(times)


def _compressions(client: str) -> list[str | None]:
    """The producer compressions to compare: none (the default) and those the client has
    (kafka-python: gzip always, lz4 with the ``lz4`` package; librdkafka: all built in)."""
    if client == "confluent":
        return [None, "lz4", "zstd"]
    return [None, "gzip"] + (["lz4"] if importlib.util.find_spec("lz4") else [])


def _workers(kafka: KafkaConfig, topic: str, hidden: int, count: int,
             devices: int) -> dict[str, float]:  # fmt: skip
    """``count`` worker processes in one group drain ``topic``: combined samples/s."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "pipeline.bench.e2e", "--bootstrap", kafka.bootstrap_servers,
               "--client", kafka.client, "--topic", topic, "--group", group,
               "--hidden", str(hidden), "--devices", str(devices)]  # fmt: skip
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(count)]  # fmt: skip
    results = [json.loads(p.communicate(timeout=1800)[0].splitlines()[-1]) for p in procs]
    busy = [r for r in results if r["samples"]]
    # the group's busy span after each worker's first batch, and the samples in it; a single
    # batch each (a tiny run) counts as one poll's time
    span = max(max(r["last"] for r in busy) - min(r["first"] for r in busy), 0.05)
    return {"samples": sum(r["samples"] for r in results), "seconds": span,
            "timed": sum(r["timed"] for r in results),
            "per_worker": [r["samples"] for r in results]}  # fmt: skip


def bench_e2e(
    bootstrap: str, devices: int = 10_000, seconds: float = 10.0, hidden: int = 64,
    samples_per_record: int = 50, latency_wall_s: float = 20.0, workers: tuple[int, ...] = (1,),
    client_names: tuple[str, ...] = ("kafka-python",), latency_runs: int = 3,
    drain_runs: int = 3,
) -> list[dict[str, object]]:  # fmt: skip
    """Every row for each client library of ``client_names`` (the one-worker row, a row per
    worker count of ``workers``, the ceilings, the latency), the same fleet for all. NumPy's
    BLAS runs one thread, as in ``harstream run`` (workers scale out by processes)."""
    one_blas_thread()
    fleet = SyntheticConfig(devices=devices, duration_s=seconds, gap_prob=0.0, seed=3)
    data = simulate(fleet)
    rows = []
    for name in client_names:
        kafka = KafkaConfig(bootstrap, client_id="harstream-bench", client=name)
        rows += _one_client(kafka, data, fleet, hidden, samples_per_record, latency_wall_s,
                            workers, latency_runs, drain_runs)  # fmt: skip
    return rows


def _one_client(
    kafka: KafkaConfig, data, fleet: SyntheticConfig, hidden: int, samples_per_record: int,
    latency_wall_s: float, workers: tuple[int, ...], latency_runs: int, drain_runs: int,
) -> list[dict[str, object]]:  # fmt: skip
    devices = fleet.devices
    model, meta = stream_model(hidden)
    common = {"client": kafka.client, "cell": "lstm", "hidden": hidden, "devices": devices}

    # 1. throughput: topic filled first, then drained by one worker (several times, each
    # in a new group from the start), and by several
    topic, records = _fill(kafka, data, samples_per_record)
    drains = [_drain_all(kafka, topic, model, meta, records, devices) for _ in range(drain_runs)]
    rates = [d["samples"] / d["seconds"] for d in drains]
    rate = statistics.median(rates)
    rows = [{"bench": "e2e-throughput", **common, "workers": 1, "samples": drains[0]["samples"],
             "samples_per_s": round(rate), "samples_per_s_per_run": [round(r) for r in rates],
             "records_per_s": round(statistics.median(d["messages"] / d["seconds"]
                                                      for d in drains)),
             "step_share": round(statistics.median(d["step_s"] / d["seconds"] for d in drains), 3),
             "target_samples_per_s": devices * 50}]  # fmt: skip
    for count in (c for c in workers if c > 1):
        combined = _workers(kafka, topic, hidden, count, devices)
        rows.append({"bench": "e2e-throughput", **common, "workers": count,
                     "samples": combined["samples"],
                     "samples_per_s": round(combined["timed"] / combined["seconds"]),
                     "per_worker_samples": combined["per_worker"],
                     "target_samples_per_s": devices * 50})  # fmt: skip

    # 2. ceilings of each side alone
    rows.append({"bench": "e2e-input-ceiling", **common,
                 "samples_per_s": round(_input_ceiling(kafka, topic, records, data.n_samples)),
                 "what": "poll + decode every record, nothing else"})  # fmt: skip
    for compression in _compressions(kafka.client):
        rate_out = _output_ceiling(kafka, devices, samples_per_record, compression)
        rows.append({"bench": "e2e-output-ceiling", **common, "compression": compression or "none",
                     "samples_per_s": round(rate_out),
                     "what": "build, send, flush a batch's predictions"})  # fmt: skip

    # 3. latency at half that rate (the median run of several: the producer, the broker and
    # the worker share the machine's cores, so one run can catch the others busy)
    half = rate / 2
    runs = [_latency(kafka, model, meta, fleet, half, samples_per_record, latency_wall_s, seed)
            for seed in range(4, 4 + latency_runs)]  # fmt: skip
    p99 = [r["p99_ms"] for r in runs]
    rows.append({"bench": "e2e-latency", **common, "samples_per_s": round(half),
                 "samples": sum(r["samples"] for r in runs),
                 "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                 "p99_ms": statistics.median(p99), "p99_ms_per_run": p99,
                 "latency": "producer send -> prediction, per record; median run"})  # fmt: skip
    return rows


def _latency(kafka: KafkaConfig, model, meta, fleet: SyntheticConfig, rate: float,
             samples_per_record: int, wall_s: float, seed: int) -> dict[str, float]:  # fmt: skip
    """One paced run: once a worker has joined its group, a replay process (same client
    library) sends a fleet at ``rate`` samples/s for about ``wall_s``; p50 and p99 of the
    latency from the producer's send to the prediction."""
    devices = fleet.devices
    speed = rate / (devices * fleet.rate_hz)
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, [TopicSpec(topic, 6)])
    duration = max(2.0, wall_s * speed)
    worker = _worker(kafka, topic, model, meta, devices)
    _join(worker, partitions=6)  # else the first records wait out the group join
    with tempfile.TemporaryDirectory() as tmp:
        producer = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "replay", "--dataset", "synthetic",
             "--devices", str(devices), "--duration-s", f"{duration:.2f}", "--seed", str(seed),
             "--gap-prob", "0", "--kafka-client", kafka.client,
             "--to", f"kafka://{kafka.bootstrap_servers}/{topic}", "--speed", f"{speed:.5f}",
             "--samples-per-record", str(samples_per_record), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        deadline = time.monotonic() + wall_s * 3 + 60
        while producer.poll() is None and time.monotonic() < deadline:
            worker.step()
        worker.run(timeout=3)
        producer.wait(timeout=60)
    lat = list(worker.stats.latency_ms)
    worker.close()
    return {"samples": worker.stats.samples,
            "p50_ms": round(statistics.median(lat), 1) if lat else float("nan"),
            "p99_ms": round(percentile(lat, 99), 1) if lat else float("nan")}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """One worker process of the ``workers`` > 1 run: drain, print its JSON line."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--client", default="kafka-python")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args(argv)
    one_blas_thread()
    model, meta = stream_model(args.hidden)
    kafka = KafkaConfig(args.bootstrap, client_id="harstream-bench", client=args.client)
    worker = _worker(kafka, args.topic, model, meta, args.devices, group=args.group)
    result = _drain(worker)
    worker.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
