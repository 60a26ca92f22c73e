"""Command-line flags that pick a dataset: a file or the synthetic fleet."""

from __future__ import annotations

import argparse

from streams.datasets import load_dataset
from streams.datasets.base import StreamDataset


def add_dataset_arguments(parser: argparse.ArgumentParser, default: str = "synthetic") -> None:
    g = parser.add_argument_group("dataset")
    g.add_argument(
        "--dataset",
        default=default,
        help="'synthetic', uci_har.npz, uci_hapt_raw.npz, or a CSV/NPZ file in the generic "
        "format (columns device, timestamp, channels..., label) (default: %(default)s)",
    )
    g.add_argument(
        "--users", help="only these users' streams, comma-separated (e.g. 2,4,9)", default=None
    )
    g.add_argument("--max-devices", type=int, help="only the first N device streams")
    g.add_argument("--devices", type=int, default=20, help="synthetic: devices (%(default)s)")
    g.add_argument(
        "--duration-s", type=float, default=120.0, help="synthetic: seconds each (%(default)s)"
    )
    g.add_argument("--seed", type=int, default=0, help="synthetic data and faults (%(default)s)")
    g.add_argument(
        "--gap-prob", type=float, default=0.001, help="synthetic: chance per sample of a gap"
    )


def dataset_from_args(args: argparse.Namespace) -> StreamDataset:
    """Load the dataset the flags name and apply the user and device filters."""
    kwargs = {}
    if args.dataset == "synthetic":
        kwargs = {"devices": args.devices, "duration_s": args.duration_s, "seed": args.seed,
                  "gap_prob": args.gap_prob}  # fmt: skip
    data = load_dataset(args.dataset, **kwargs)
    if args.users:
        data = data.select_users(int(u) for u in args.users.split(","))
    if args.max_devices is not None:
        data = StreamDataset(
            data.name,
            data.channels,
            data.activities,
            data.rate_hz,
            data.streams[: args.max_devices],
        )
    return data
