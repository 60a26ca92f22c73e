"""``harstream demo``: the embedded default, in one process, with no broker and no datasets.

A synthetic fleet is replayed (with a few injected faults) through the in-memory bus; a consumer
decodes every record, drops the invalid ones with their reason and accounts for every sample,
with a live console view. It ends with the accounting check.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from pipeline.drain import Drainer
from streams.accounting import compare_tallies
from streams.codecs import CodecConfig, make_codec
from streams.datasets.synthetic import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.record import Record
from streams.replay import FaultConfig, ReplayConfig, replay

TOPIC = "sensor.raw"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the embedded pipeline on a synthetic fleet", description=__doc__
    )
    p.add_argument("--devices", type=int, default=200, help="(default: %(default)s)")
    p.add_argument("--duration-s", type=float, default=60.0, help="stream length (%(default)s)")
    p.add_argument("--speed", type=float, default=20.0, help="x real time (%(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-live", action="store_true", help="no live view, summary only")
    p.set_defaults(run=run)


class _View:
    """What the live console shows: fleet size, throughput, rejects, current activities."""

    def __init__(self, activities: tuple[str, ...]) -> None:
        self.activities = activities
        self.current: dict[str, int] = {}
        self.started = time.perf_counter()

    def on_record(self, record: Record) -> None:
        if record.labels is not None:
            self.current[record.device] = int(record.labels[-1])

    def render(self, drainer: Drainer, planned: int) -> Group:
        elapsed = time.perf_counter() - self.started
        ledger = drainer.ledger
        stats = Table(title="harstream demo — embedded pipeline", show_header=False)
        stats.add_row("devices seen", f"{len(self.current):,}")
        stats.add_row("records decoded", f"{ledger.records:,} (replay plans {planned:,})")
        stats.add_row("samples/s", f"{ledger.samples / max(elapsed, 1e-9):,.0f}")
        stats.add_row("rejected", ", ".join(f"{k}={v}" for k, v in drainer.rejected.items()) or "0")
        mix = Counter(self.activities[a] for a in self.current.values() if a >= 0)
        fleet = Table(title="devices per current activity (from the stream's labels)")
        fleet.add_column("activity")
        fleet.add_column("devices", justify="right")
        for name in self.activities:
            fleet.add_row(name, str(mix.get(name, 0)))
        return Group(stats, fleet)


def run(args: argparse.Namespace) -> int:
    console = Console()
    data = simulate(
        SyntheticConfig(devices=args.devices, duration_s=args.duration_s, seed=args.seed)
    )
    faults = FaultConfig(
        duplicate=0.01, reorder=0.01, nan_burst=0.002, corrupt=0.002, seed=args.seed
    )
    config = ReplayConfig(topic=TOPIC, speed=args.speed, faults=faults)
    bus = MemoryBus(partitions=4)
    view = _View(data.activities)
    codec = make_codec("auto", CodecConfig(channels=len(data.channels)))
    drainer = Drainer(MemorySource(bus, [TOPIC]), codec, on_record=view.on_record)
    progress = {"total": 0}
    box: dict = {}

    def produce() -> None:
        box["report"] = replay(
            data, MemorySink(bus), config, lambda done, total: progress.update(total=total)
        )

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    finished = lambda d: not producer.is_alive() and bus.depth(TOPIC) == 0  # noqa: E731
    if args.no_live:
        drainer.run(finished, timeout_s=3600)
    else:
        with Live(view.render(drainer, 0), console=console, refresh_per_second=4) as live:
            drainer.run(
                finished,
                timeout_s=3600,
                on_step=lambda d: live.update(view.render(d, progress["total"])),
            )
            live.update(view.render(drainer, progress["total"]))
    producer.join()
    report = box["report"]
    problems = compare_tallies(report.expected, drainer.ledger.tallies())
    console.print(f"faults injected: {report.faults}")
    console.print(f"rejected by the decoder: {dict(drainer.rejected)}")
    if problems:
        console.print(f"[red]{len(problems)} devices do not add up[/red], e.g. {problems[0]}")
        return 1
    console.print(
        f"[green]every valid sample accounted for[/green]: {report.expected_samples:,} samples "
        f"of {len(report.expected)} devices, counts and checksums equal"
    )
    return 0
