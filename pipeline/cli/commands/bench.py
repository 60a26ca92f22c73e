"""``harstream bench``: measured figures, printed as tables or one JSON object per row."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from pipeline.bench.codecs import bench_codecs
from pipeline.cli.checks import (
    choice_list,
    non_negative_int_list,
    positive_float,
    positive_int,
    positive_int_list,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print what it measured")
    which = p.add_subparsers(title="benchmarks", required=True, metavar="BENCH")
    codec = which.add_parser("codec", help="encode/decode throughput of the wire codecs")
    codec.add_argument("--records", type=positive_int, default=1000, help="records per round")
    codec.add_argument("--repeats", type=positive_int, default=5,
                       help="rounds; the median is reported")  # fmt: skip
    codec.add_argument("--json", action="store_true", help="one JSON object per row")
    codec.set_defaults(run=run_codec)
    engine = which.add_parser(
        "engine",
        help="device-steps/s of the NumPy runtime on one core vs one Keras call per message; "
        "the worker's CPU with devices at other rates than the model's",
    )
    engine.add_argument("--devices", type=positive_int_list, default="1,100,1000,10000,100000",
                        help="comma-separated device counts (%(default)s)")  # fmt: skip
    engine.add_argument("--cells", type=choice_list(("rnn", "lstm", "gru")), default="lstm,gru",
                        help="(%(default)s)")  # fmt: skip
    engine.add_argument("--hidden", type=positive_int, default=64)
    engine.add_argument("--device-rates", type=positive_int_list, default="50,100",
                        help="Hz of the devices a 50 Hz model serves in the worker rows, 10,000 "
                        "devices (%(default)s)")  # fmt: skip
    engine.add_argument("--delays-ms", type=non_negative_int_list, default="0,1000,2000",
                        help="label delays ([worker] delay_ms) for the delay rows, 10,000 "
                        "devices, the first the reference (%(default)s)")  # fmt: skip
    engine.add_argument("--members", type=positive_int_list, default="1,3",
                        help="ensemble sizes for the ensemble rows, the first the reference "
                        "(%(default)s)")  # fmt: skip
    engine.add_argument("--json", action="store_true", help="one JSON object per row")
    engine.set_defaults(run=run_engine)
    e2e = which.add_parser(
        "e2e", help="workers through the real broker: highest samples/s, ceilings, latency at half"
    )
    e2e.add_argument("--devices", type=positive_int, default=10_000)
    e2e.add_argument("--seconds", type=positive_float, default=10.0, help="of data per device")
    e2e.add_argument("--hidden", type=positive_int, default=64)
    e2e.add_argument("--workers", type=positive_int_list, default=[1, 2],
                     help="worker process counts to measure, e.g. 1,2 (default)")  # fmt: skip
    e2e.add_argument("--clients", type=choice_list(("kafka-python", "confluent")), default=None,
                     help="Kafka client libraries (default: each one installed)")  # fmt: skip
    e2e.add_argument("--json", action="store_true", help="one JSON object per row")
    e2e.set_defaults(run=run_e2e)
    swap = which.add_parser(
        "swap", help="hot swaps in a busy worker: hot-path pause, promotion to first prediction"
    )
    swap.add_argument("--devices", type=positive_int, default=10_000)
    swap.add_argument("--swaps", type=positive_int, default=10)
    swap.add_argument("--hidden", type=positive_int, default=64)
    swap.add_argument("--json", action="store_true", help="one JSON object")
    swap.set_defaults(run=run_swap)
    recovery = which.add_parser(
        "recovery", help="time to restore a fleet's device states after a crash (real broker)"
    )
    recovery.add_argument("--devices", type=positive_int, default=10_000)
    recovery.add_argument("--hidden", type=positive_int, default=64)
    recovery.add_argument("--partitions", type=positive_int, default=6, help="of the state topic")
    recovery.add_argument("--repeats", type=positive_int, default=5,
                          help="restores; the median is reported")  # fmt: skip
    recovery.add_argument("--json", action="store_true", help="one JSON object")
    recovery.set_defaults(run=run_recovery)


def print_rows(rows: list[dict[str, object]], title: str, as_json: bool) -> None:
    """Rows as JSON lines (for machines) or as a table (for people)."""
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    keys = [k for k in rows[0] if k != "bench"]
    table = Table(title=title)
    for key in keys:
        table.add_column(key.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(f"{row[k]:,}" if isinstance(row[k], int) else str(row[k]) for k in keys))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # logs and CI: do not squeeze columns to 80
    console.print(table)


def run_codec(args: argparse.Namespace) -> int:
    rows = bench_codecs(records=args.records, repeats=args.repeats)
    print_rows(rows, "Wire codecs (median of rounds; 6 float32 channels)", args.json)
    return 0


def run_engine(args: argparse.Namespace) -> int:
    from pipeline.bench.engine import (  # Keras: at run
        bench_delay,
        bench_engine,
        bench_ensemble,
        bench_frame,
        bench_memory,
        bench_rates,
    )

    rows = bench_engine(tuple(args.devices), tuple(args.cells), args.hidden)
    print_rows(rows, "Engine: batched NumPy runtime, 1 core (median of 5 rounds)", args.json)
    frames = bench_frame(min(max(args.devices), 10_000), hidden=args.hidden)
    print_rows(frames, "Engine, raw axes vs the gravity frame (LSTM, median of 3 rounds; "
               "frame_cost = 1 - rate / raw axes' rate)", args.json)  # fmt: skip
    ensembles = bench_ensemble(min(max(args.devices), 10_000), hidden=args.hidden,
                               members=tuple(args.members))  # fmt: skip
    print_rows(ensembles, "Engine, one LSTM vs ensembles (weights stacked, median of 3 rounds; "
               "time_vs_one = one model's rate / this rate)", args.json)  # fmt: skip
    print_rows([bench_memory(hidden=args.hidden)], "Memory per device", args.json)
    rates = bench_rates(rates=tuple(float(r) for r in args.device_rates), hidden=args.hidden)
    title = ("Worker CPU (no Kafka), devices at other rates than the model's 50 Hz "
             "(median of 3 rounds; resample_share = time resampling / all)")  # fmt: skip
    print_rows(rates, title, args.json)
    delays = bench_delay(delays_ms=tuple(float(ms) for ms in args.delays_ms), hidden=args.hidden)
    title = ("Worker CPU (no Kafka), labels delayed by delay_ms (centred mean, fixed-lag "
             "HMM smoother, or the smoother mixed with a GRU 1x64 refiner), 10,000 devices "
             "at 50 Hz (median of 3 rounds; time_vs_first = the first's rate / this "
             "rate)")  # fmt: skip
    print_rows(delays, title, args.json)
    return 0


@contextmanager
def _broker() -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP``, or a local broker started for the run (stopped after it)."""
    from streams.local_kafka import LocalKafka, ensure_jars  # kafka-python: not at start-up

    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    broker = LocalKafka()
    ensure_jars(broker.config)
    with broker:
        yield broker.bootstrap


def run_e2e(args: argparse.Namespace) -> int:
    """Against $KAFKA_BOOTSTRAP, or a local broker started for the run."""
    from pipeline.bench.e2e import bench_e2e  # the benchmark harness: loaded when it runs

    names = args.clients or [c for c in ("kafka-python", "confluent") if installed(c)]
    with _broker() as bootstrap:
        rows = bench_e2e(bootstrap, args.devices, args.seconds, args.hidden,
                         workers=tuple(args.workers), client_names=tuple(names))  # fmt: skip
    for bench, title in (
        ("e2e-throughput", "End to end through Kafka: highest sustained rate"),
        ("e2e-input-ceiling", "Input side alone: poll and decode"),
        ("e2e-output-ceiling", "Output side alone: build and send one batch's predictions"),
        ("e2e-latency", "End to end: latency at half the one-worker rate"),
    ):
        print_rows([r for r in rows if r["bench"] == bench], title, args.json)
    return 0


def installed(client: str) -> bool:
    """Whether the client library ``client`` can be imported (without importing it)."""
    module = {"kafka-python": "kafka", "confluent": "confluent_kafka"}[client]
    return importlib.util.find_spec(module) is not None


def run_swap(args: argparse.Namespace) -> int:
    from pipeline.bench.swap import bench_swap  # the benchmark harness: loaded when it runs

    row = bench_swap(devices=args.devices, swaps=args.swaps, hidden=args.hidden)
    print_rows([row], "Hot swap in one embedded worker at full speed (ring re-priming)", args.json)
    return 0


def run_recovery(args: argparse.Namespace) -> int:
    """Against $KAFKA_BOOTSTRAP, or a local broker started for the run."""
    from pipeline.bench.recovery import bench_recovery  # the benchmark harness: when it runs

    with _broker() as bootstrap:
        row = bench_recovery(bootstrap, args.devices, args.hidden, args.partitions, args.repeats)
    title = f"Crash recovery: a fresh worker restores every device (median of {args.repeats})"
    print_rows([row], title, args.json)
    return 0
