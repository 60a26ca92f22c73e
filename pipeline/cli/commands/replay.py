"""``harstream replay``: publish recorded or synthetic streams as a fleet of devices would."""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING

from pipeline.cli.checks import positive_int
from pipeline.cli.dataset_args import add_dataset_arguments, check_dataset_args, dataset_from_args
from pipeline.cli.drain import Drainer
from pipeline.cli.kafka_args import (
    add_kafka_arguments,
    check_kafka_arguments,
    kafka_config_from_args,
)
from pipeline.cli.progress import progress_bar, stderr
from pipeline.exceptions import ConfigError
from streams import clients
from streams.accounting import compare_tallies
from streams.admin import TopicSpec, ensure_topics
from streams.codecs import CodecConfig, make_codec
from streams.kafka_config import parse_kafka_url
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, ReplayReport, replay

if TYPE_CHECKING:
    from streams.datasets.base import StreamDataset


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="publish device streams to Kafka or memory, optionally with faults",
        description=__doc__,
    )
    add_dataset_arguments(p)
    p.add_argument(
        "--to",
        default="memory",
        help="kafka://HOST:PORT/TOPIC, or 'memory' to replay into an in-process bus and check "
        "that every sample arrives (default: %(default)s)",
    )
    p.add_argument(
        "--partitions", type=positive_int, default=6, help="when creating the topic (%(default)s)"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="x real time (1 = real time); omit for as fast as possible",
    )
    p.add_argument(
        "--samples-per-record", type=positive_int, default=25, help="(default: %(default)s)"
    )
    p.add_argument("--codec", choices=["binary", "json"], default="binary")
    p.add_argument("--no-labels", action="store_true", help="leave the labels out of records")
    f = p.add_argument_group("fault injection (probability per record)")
    for name in ("drop", "duplicate", "reorder", "nan-burst", "corrupt"):
        f.add_argument(f"--{name}", type=float, default=0.0, metavar="P")
    f.add_argument("--clock-skew-ms", type=int, default=0, metavar="MS")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_kafka_arguments(p)
    p.set_defaults(run=run)


def replay_config_from_args(args: argparse.Namespace, topic: str) -> ReplayConfig:
    faults = FaultConfig(
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        nan_burst=args.nan_burst,
        corrupt=args.corrupt,
        clock_skew_ms=args.clock_skew_ms,
        seed=args.seed,
    )
    return ReplayConfig(
        topic=topic,
        samples_per_record=args.samples_per_record,
        speed=args.speed,
        codec=args.codec,
        with_labels=not args.no_labels,
        faults=faults,
    )


def _to_kafka(args, data: StreamDataset, show: bool) -> ReplayReport:
    bootstrap, topic = parse_kafka_url(args.to)
    kafka = kafka_config_from_args(args, bootstrap)
    ensure_topics(kafka, [TopicSpec(topic, args.partitions)])
    sink = clients.sink(kafka)
    try:
        with progress_bar(f"replay → {topic}", show) as update:
            return replay(data, sink, replay_config_from_args(args, topic), update)
    finally:
        sink.close()


def _to_memory(args, data: StreamDataset, show: bool) -> tuple[ReplayReport, dict]:
    """Replay into a bus while a consumer drains it, then check every sample arrived."""
    bus, topic = MemoryBus(partitions=args.partitions), "sensor.raw"
    codec = make_codec("auto", CodecConfig(channels=len(data.channels)))
    drainer = Drainer(MemorySource(bus, [topic]), codec)
    finished = threading.Event()
    reader = threading.Thread(
        target=drainer.run,
        args=(lambda d: finished.is_set() and bus.depth(topic) == 0,),
        daemon=True,
    )
    reader.start()
    with progress_bar("replay → memory", show) as update:
        report = replay(data, MemorySink(bus), replay_config_from_args(args, topic), update)
    finished.set()
    reader.join()
    problems = compare_tallies(report.expected, drainer.ledger.tallies())
    check = {
        "received_records": drainer.ledger.records,
        "rejected": dict(drainer.rejected),
        "devices_mismatched": len(problems),
    }
    return report, check


def _check(args: argparse.Namespace) -> None:
    """Every flag, before the dataset is loaded or a broker is contacted."""
    check_dataset_args(args)
    to_kafka = args.to != "memory"
    if to_kafka:
        try:
            parse_kafka_url(args.to)
        except ValueError:
            raise ConfigError(
                f"--to {args.to}: expected kafka://HOST:PORT/TOPIC or 'memory'"
            ) from None
    check_kafka_arguments(args, to_kafka, "with --to kafka://...")
    replay_config_from_args(args, "sensor.raw")  # refuses bad fault rates, speed, ...


def run(args: argparse.Namespace) -> int:
    _check(args)
    data = dataset_from_args(args)
    show = not args.json
    if args.to == "memory":
        report, check = _to_memory(args, data, show)
    else:
        report, check = _to_kafka(args, data, show), {}
    summary = {"dataset": data.name, **report.summary(), **check}
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            stderr.print(f"  {key:<22} {value}")
    return 1 if check.get("devices_mismatched") else 0
