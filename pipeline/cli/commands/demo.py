"""``harstream demo``: the embedded default, in one process, with no broker and no datasets.

A synthetic fleet the models never saw is replayed (with a few injected faults) through the
in-memory bus into the same worker that runs on Kafka: a stream model keeps a recurrent state per
device and labels every sample (many-to-many), a window model labels each window (many-to-one).
Its devices send at 50, 100 and 200 Hz (``--rates``), resampled by the worker to the models'
50 Hz. The fleet carries its phones at new angles (``--carry-deg``), so the stream model drifts; the
trainer, beside the worker, learns from the stream's labels, and when a candidate beats the
champion on held-out devices it is promoted in a temporary registry and the worker swaps to it
live. A console view shows the fleet; the run ends with accuracy per model version, and what
waiting for a label buys: the final champion's per-sample accuracy on the fleet with each label
delay of ``--delays-ms`` (the worker's own labels are emitted ``--delay-ms`` late).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from models.registry import Registry
from pipeline.cli.checks import (
    non_negative_float,
    non_negative_int_list,
    positive_float,
    positive_int,
    positive_int_list,
    tcp_port,
)
from pipeline.cli.progress import stderr
from pipeline.exceptions import ConfigError
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay

TOPIC = "sensor.raw"
SHORT = {"WALKING": "W", "WALKING_UPSTAIRS": "U", "WALKING_DOWNSTAIRS": "D", "SITTING": "s",
         "STANDING": "t", "LAYING": "l"}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the embedded pipeline on a synthetic fleet",
                       description=__doc__)  # fmt: skip
    p.add_argument("--devices", type=positive_int, default=200, help="(default: %(default)s)")
    p.add_argument(
        "--duration-s", type=positive_float, default=150.0, help="stream length (%(default)s)"
    )
    p.add_argument("--speed", type=positive_float, default=5.0, help="x real time (%(default)s)")
    p.add_argument("--carry-deg", type=float, default=45.0,
                   help="how far off the devices wear their phones, in degrees; the demo "
                   "models learnt 10 (%(default)s)")  # fmt: skip
    p.add_argument("--rates", type=positive_int_list, default="50,100,200",
                   help="Hz of the fleet's devices, taken in turn (the models run at 50 Hz; "
                   "default %(default)s)")  # fmt: skip
    p.add_argument("--delay-ms", type=non_negative_float, default=0.0,
                   help="emit each sample's label this late, from the samples up to that after "
                   "it ([worker] delay_ms; default %(default)s)")  # fmt: skip
    p.add_argument(
        "--delays-ms",
        type=non_negative_int_list,
        default="0,500,1000,2000",
        help="label delays whose accuracy the closing table compares (%(default)s)",
    )
    p.add_argument("--no-trainer", action="store_true", help="no retraining, no swap")
    p.add_argument("--seed", type=int, default=1, help="the fleet to replay (%(default)s)")
    p.add_argument("--no-live", action="store_true", help="no live view, summary only")
    p.add_argument("--http-port", type=tcp_port, default=8765,
                   help="port of the live dashboard and /metrics on 127.0.0.1; 0 picks a free "
                   "one, and so does the demo when this one is taken (%(default)s)")  # fmt: skip
    p.add_argument("--no-http", action="store_true", help="serve no dashboard and no metrics")
    p.set_defaults(run=run)


class _Outputs:
    """Reads the worker's output topics: accuracy, timelines, recent changes."""

    def __init__(self, bus: MemoryBus, labels: dict[str, dict[int, str]], classes) -> None:
        self.source = MemorySource(bus, ["har.predictions", "har.events"])
        self.labels = labels
        self.classes = classes
        self.hits = Counter()
        self.totals = Counter()
        self.by_version: dict[str, list[int]] = {}
        self.timeline: dict[str, deque] = {}
        self.changes: deque = deque(maxlen=6)
        self.current: dict[str, str] = {}

    def drain(self) -> None:
        for msg in self.source.poll(max_records=1_000_000, timeout_s=0):
            p = json.loads(msg.value)
            if msg.topic == "har.events":
                self.changes.append(f"{p['device']}: {p['from'] or '-'} → {p['to']}")
                continue
            if p["kind"] == "window":
                self._score("window", p["device"], p["seq_last"], p["activity"])
                continue
            steps = p.get("steps") or {"seq": [p["seq"]], "activity": [None]}
            tally = self.by_version.setdefault(p["model"], [0, 0])
            for seq, code in zip(steps["seq"], steps["activity"], strict=True):
                name = p["activity"] if code is None else self.classes[code]
                truth = self._score("sample", p["device"], seq, name)
                if truth is not None:
                    tally[0] += truth == name
                    tally[1] += 1
                line = self.timeline.setdefault(p["device"], deque(maxlen=48))
                line.append((SHORT.get(name, "?"), SHORT.get(truth, "·")))
            self.current[p["device"]] = p["activity"]

    def _score(self, kind: str, device: str, seq: int, activity: str) -> str | None:
        truth = self.labels[device].get(seq)
        if truth is not None:
            self.totals[kind] += 1
            self.hits[kind] += truth == activity
        return truth

    def accuracy(self, kind: str) -> float:
        return self.hits[kind] / self.totals[kind] if self.totals[kind] else float("nan")


def _outcome(retrain) -> str:
    v = retrain.verdict
    verdict = "promoted" if v.promote else "rejected"
    return f"v{retrain.version} {verdict} ({v.candidate_accuracy:.3f} vs {v.champion_accuracy:.3f})"


def _render(worker, outputs: _Outputs, activities, started: float, planned: int,
            trainer=None) -> Group:  # fmt: skip
    stats = worker.stats
    elapsed = max(time.perf_counter() - started, 1e-9)
    lat = sorted(stats.latency_ms)
    p50 = lat[len(lat) // 2] if lat else float("nan")
    p99 = lat[int(len(lat) * 0.99)] if lat else float("nan")
    head = Table(title="harstream demo — the embedded pipeline", show_header=False)
    head.add_row("devices", f"{len(worker.store):,}")
    head.add_row("records", f"{stats.records:,} of {planned:,} planned")
    head.add_row("throughput", f"{stats.samples / elapsed:,.0f} samples/s")
    head.add_row("latency p50 / p99", f"{p50:.0f} / {p99:.0f} ms")
    head.add_row("models", f"{worker.stream_model.version} + {worker.window_model.version}")
    head.add_row("accuracy so far", f"per sample {outputs.accuracy('sample'):.3f}, "
                 f"per window {outputs.accuracy('window'):.3f}")  # fmt: skip
    head.add_row("dead letters", ", ".join(f"{k}={v}" for k, v in stats.rejected.items()) or "0")
    if trainer is not None:
        runs = ", ".join(_outcome(r) for r in trainer.stats.retrains) or "-"
        alarms = trainer.stats.drift_detections
        head.add_row("trainer", f"{len(trainer.buffer):,} labelled windows buffered, "
                     f"{alarms} drift alarms; retrains: {runs}")  # fmt: skip
        head.add_row("swaps", ", ".join(f"{r.previous} → {r.version} (pause "
                     f"{max(r.pauses_ms):.0f} ms)" for r in stats.swaps) or "-")  # fmt: skip
    mix = Counter(outputs.current.values())
    fleet = Table(title="devices per current activity")
    fleet.add_column("activity")
    fleet.add_column("devices", justify="right")
    for name in activities:
        fleet.add_row(name, str(mix.get(name, 0)))
    lines = Table(
        title="timelines (predicted over labelled; W U D walk/up/down, s t l sit/stand/lie)"
    )
    lines.add_column("device")
    lines.add_column("timeline", no_wrap=True)
    for device in sorted(outputs.timeline)[:4]:
        steps = outputs.timeline[device]
        lines.add_row(device, "".join(p for p, _ in steps) + "\n" + "".join(t for _, t in steps))
    recent = Table(title="recent activity changes", show_header=False)
    for change in outputs.changes:
        recent.add_row(change)
    return Group(head, fleet, lines, recent)


class _Tee:
    """Sends every message to each of several sinks (the worker's bus and the trainer's)."""

    def __init__(self, *sinks) -> None:
        self.sinks = sinks

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        for sink in self.sinks:
            sink.send(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        for sink in self.sinks:
            sink.flush(timeout_s)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _serve(worker, trainer, port: int):
    """The dashboard, and the worker's and trainer's metrics, on 127.0.0.1:``port``."""
    from pipeline.observability.server import HttpConfig  # the status server: when it runs
    from pipeline.wiring import serve_worker  # kafka-python, prometheus: not at start-up

    try:
        return serve_worker(worker, HttpConfig(port=port), trainer)
    except ConfigError as exc:
        stderr.print(f"[yellow]{exc}; using a free port[/yellow]")
    return serve_worker(worker, HttpConfig(port=0), trainer)


def _trainer(registry, bus):
    """The trainer, on its own copy of the stream: small windows, a retrain per 1,500."""
    from pipeline.trainer.buffer import BufferConfig  # the trainer's parts: when the demo runs
    from pipeline.trainer.gate import GateConfig  # likewise
    from pipeline.trainer.labelling import JoinConfig  # likewise
    from pipeline.trainer.service import TRAINING, Trainer, TrainerConfig  # likewise

    # phones worn at new angles: every layer must adapt
    train = replace(TRAINING, epochs=3, tbptt_steps=42, tune="all", learning_rate=3e-4)
    config = TrainerConfig(
        name="har", labels_topic=None, every_windows=1500, interval_s=None, min_windows=300,
        train=train, buffer=BufferConfig(capacity=6000, window=128),
        join=JoinConfig(window=128, stride=128), gate=GateConfig(min_holdout_windows=50),
    )  # fmt: skip
    return Trainer(MemorySource(bus, [TOPIC]), registry, config)


def run(args: argparse.Namespace) -> int:
    from models.io import load_model  # Keras: not at start-up
    from pipeline import demo_models  # Keras (it trains them when missing): not at start-up
    from pipeline.serving import ServingModel  # the worker's parts: when the demo runs
    from pipeline.swap.watcher import HotSwap, SwapConfig, one_blas_thread  # likewise
    from pipeline.worker import Worker, WorkerConfig  # likewise
    from streams.datasets import SyntheticConfig, simulate  # the datasets: not at start-up
    from streams.datasets.resample import at_rate  # likewise

    console = Console()
    one_blas_thread()
    if not (demo_models.STREAM_FILE.is_file() and demo_models.WINDOW_FILE.is_file()):
        stderr.print("no demo models yet: training them on a synthetic fleet (under a minute)")
        demo_models.build(quiet=True)
    home = tempfile.TemporaryDirectory(prefix="harstream-demo-")
    registry = Registry(Path(home.name) / "registry")
    registry.register("har", demo_models.STREAM_FILE, training_data="the demo fleet (seed 11)")
    registry.promote("har", 1)
    stream = ServingModel.load(*registry.load("har", 1), version="har@v0001")
    window = ServingModel.load(*load_model(demo_models.WINDOW_FILE), version="demo-window")
    fleet = simulate(SyntheticConfig(devices=args.devices, duration_s=args.duration_s,
                                     orientation_jitter_deg=args.carry_deg,
                                     seed=args.seed))  # fmt: skip
    rates = [float(r) for r in args.rates]  # phones at other rates: the worker resamples
    data = replace(fleet, streams=tuple(s if s.rate_hz == rates[i % len(rates)] else
                                        at_rate(s, rates[i % len(rates)])
                                        for i, s in enumerate(fleet.streams)))  # fmt: skip
    labels = {
        s.device: dict(zip(s.sequence().tolist(), (data.activities[a] if a >= 0 else None
                                                   for a in s.labels.tolist()), strict=True))
        for s in data.streams
    }  # fmt: skip
    faults = FaultConfig(duplicate=0.01, reorder=0.01, nan_burst=0.002, corrupt=0.002,
                         seed=args.seed)  # fmt: skip
    bus, out = MemoryBus(partitions=4, capacity=100_000), MemoryBus(1, 10_000_000)
    swaps = [] if args.no_trainer else [HotSwap(registry, "har", SwapConfig(poll_s=0.2))]
    worker = Worker(MemorySource(bus, [TOPIC]), MemorySink(out), stream, window,
                    config=WorkerConfig(emit="every_k", every_k=10, min_dwell=100,
                                        delay_ms=args.delay_ms),
                    swaps=swaps)  # fmt: skip
    trainer, learner, sinks = None, None, [MemorySink(bus)]
    if not args.no_trainer:
        learning = MemoryBus(partitions=2, capacity=10_000_000)
        trainer = _trainer(registry, learning)
        sinks.append(MemorySink(learning))
        learner = threading.Thread(target=trainer.run, name="trainer")
        learner.start()
    server = None if args.no_http else _serve(worker, trainer, args.http_port)
    if server is not None:
        stderr.print(f"dashboard: {server.url}  (metrics: {server.url}metrics)")
    outputs = _Outputs(out, labels, stream.meta.classes)
    progress = {"total": 0}
    box: dict = {}

    config = ReplayConfig(topic=TOPIC, speed=args.speed, faults=faults)

    def produce() -> None:
        box["report"] = replay(
            data, _Tee(*sinks), config, lambda done, total: progress.update(total=total)
        )

    producer = threading.Thread(target=produce, daemon=True)
    started = time.perf_counter()
    producer.start()

    def busy() -> bool:
        return producer.is_alive() or bus.depth(TOPIC) > 0

    if args.no_live:
        while busy():
            worker.step()
            outputs.drain()
    else:
        view = lambda: _render(worker, outputs, data.activities, started, progress["total"],  # noqa: E731
                               trainer)  # fmt: skip
        with Live(view(), console=console, refresh_per_second=4) as live:
            last = 0.0
            while busy():
                worker.step()
                if time.perf_counter() - last > 0.25:
                    outputs.drain()
                    live.update(view())
                    last = time.perf_counter()
            worker.run(timeout=0)
            outputs.drain()
            live.update(view())
    worker.run(timeout=0)
    outputs.drain()
    producer.join()
    if trainer is not None:
        trainer.stop()
        if learner.is_alive():
            stderr.print("waiting for the trainer to finish its current step")
        learner.join()
    worker.close()
    if server is not None:
        server.close()
    champion = f"har@{registry.get('har', 'champion').label}"
    delays = _delay_table(*registry.load("har"), champion, fleet, args.delays_ms)
    home.cleanup()
    report, stats = box["report"], worker.stats
    elapsed = time.perf_counter() - started
    console.print(f"\n[bold]replayed[/bold] {report.samples_sent:,} samples of {args.devices} "
                  f"devices in {elapsed:.1f} s; faults injected {report.faults}")  # fmt: skip
    console.print(f"worker: {stats.samples:,} distinct samples applied (expected "
                  f"{report.expected_samples:,}), {worker.sequencer.stats.duplicates} duplicate "
                  f"records dropped, dead letters {dict(stats.rejected)}")  # fmt: skip
    if trainer is not None:
        for r in trainer.stats.retrains:
            console.print(f"retrain ({r.trigger}): {_outcome(r)}: {r.verdict.reason}")
        for r in stats.swaps:
            console.print(f"swap at batch {r.batch}: {r.previous} → {r.version}, hot-path pauses "
                          f"{', '.join(f'{p:.1f}' for p in r.pauses_ms)} ms")  # fmt: skip
    table = Table(title="accuracy against the stream's labels (unseen synthetic devices)")
    for col in ("model", "set-up", "predictions scored", "accuracy"):
        table.add_column(col, justify="right")
    for version, (hits, total) in outputs.by_version.items():
        table.add_row(version, "many-to-many (stateful per device)", f"{total:,}",
                      f"{hits / total:.3f}" if total else "-")  # fmt: skip
    table.add_row(window.version, "many-to-one (windows)",
                  f"{outputs.totals['window']:,}", f"{outputs.accuracy('window'):.3f}")  # fmt: skip
    console.print(table)
    console.print(delays)
    return 0 if stats.samples == report.expected_samples else 1


def _delay_table(model, meta, version: str, fleet, delays_ms) -> Table:
    """The champion's per-sample accuracy on the fleet (at its own rate, each device from its
    start, as a worker labels it) with each label delay: what waiting for a label buys."""
    from models.smoothing import as_served  # the models' parts: when the demo ends
    from models.training import predict_streams  # Keras: likewise

    probs = predict_streams(model, [s.values for s in fleet.streams])
    y = np.concatenate([s.labels for s in fleet.streams])
    table = Table(title=f"waiting for a label: {version} on every sample of the fleet, each "
                  "device from its start")  # fmt: skip
    for col in ("label delay", "accuracy", "labels late by", "smoothed by"):
        table.add_column(col, justify="right")
    for ms in delays_ms:
        top = np.concatenate(as_served(probs, meta.grammar, ms, meta.rate_hz)).argmax(-1)
        accuracy = float(np.mean(top[y >= 0] == y[y >= 0]))
        t = meta.grammar.lag_temperature(ms) if meta.grammar is not None else None
        how = "-" if not ms else "centred mean" if t is None else f"fixed-lag HMM ({t:g})"
        table.add_row(f"{ms} ms", f"{accuracy:.3f}", f"{ms / 1000:g} s" if ms else "nothing", how)
    return table
