"""Command-line flags that pick a dataset: a file or the synthetic fleet."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipeline.cli.checks import int_list, only_with, positive_float, positive_int, probability

if TYPE_CHECKING:
    from streams.datasets.base import StreamDataset

SYNTHETIC = {"devices": 20, "duration_s": 120.0, "gap_prob": 0.001}
"""the synthetic fleet's flags and their defaults (the flags are refused with a file)"""


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str = "synthetic") -> None:
    g = parser.add_argument_group("dataset")
    g.add_argument(
        "--dataset",
        default=default,
        help="'synthetic', uci_har.npz, uci_hapt_raw.npz, or a CSV/NPZ file in the generic "
        "format (columns device, timestamp, channels..., label) (default: %(default)s)",
    )
    g.add_argument("--users", type=int_list, default=None,
                   help="only these users' streams, comma-separated (e.g. 2,4,9)")  # fmt: skip
    g.add_argument("--max-devices", type=positive_int, help="only the first N device streams")
    devices, duration, gaps = SYNTHETIC.values()
    g.add_argument("--devices", type=positive_int, help=f"synthetic: devices (default {devices})")
    g.add_argument("--duration-s", type=positive_float,
                   help=f"synthetic: seconds each (default {duration:g})")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="synthetic data and faults (%(default)s)")
    g.add_argument("--gap-prob", type=probability,
                   help=f"synthetic: chance per sample of a gap (default {gaps})")  # fmt: skip


def check_dataset_args(args: argparse.Namespace) -> None:
    """Refuse a missing dataset file, a format no reader takes, or synthetic flags with a file,
    before anything is loaded."""
    from streams.datasets import SyntheticConfig, dataset_path  # the datasets: not at start-up

    path = dataset_path(args.dataset)
    flags = {dest: "--" + dest.replace("_", "-") for dest in SYNTHETIC}
    only_with(args, path is None, "to --dataset synthetic", **flags)
    if path is None:
        SyntheticConfig(**_synthetic(args))  # refuses a fleet with no samples, ...


def _synthetic(args: argparse.Namespace) -> dict[str, object]:
    """The synthetic fleet's options: the flags given, else their defaults, and the seed."""
    given = {key: default if getattr(args, key) is None else getattr(args, key)
             for key, default in SYNTHETIC.items()}  # fmt: skip
    return {**given, "seed": args.seed}


def dataset_from_args(args: argparse.Namespace) -> StreamDataset:
    """Load the dataset the flags name and apply the user and device filters."""
    from streams.datasets import load_dataset  # the datasets package: not at start-up
    from streams.datasets.base import StreamDataset  # the datasets package: not at start-up

    kwargs = _synthetic(args) if args.dataset == "synthetic" else {}
    data = load_dataset(args.dataset, **kwargs)
    if args.users:
        data = data.select_users(args.users)
    if args.max_devices is not None:
        data = StreamDataset(
            data.name,
            data.channels,
            data.activities,
            data.rate_hz,
            data.streams[: args.max_devices],
        )
    return data
