"""``harstream bench``: measured figures, printed as tables or one JSON object per row."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from pipeline.bench.codecs import bench_codecs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark and print what it measured")
    which = p.add_subparsers(title="benchmarks", required=True, metavar="BENCH")
    codec = which.add_parser("codec", help="encode/decode throughput of the wire codecs")
    codec.add_argument("--records", type=int, default=1000, help="records per round")
    codec.add_argument("--repeats", type=int, default=5, help="rounds; the median is reported")
    codec.add_argument("--json", action="store_true", help="one JSON object per row")
    codec.set_defaults(run=run_codec)


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
