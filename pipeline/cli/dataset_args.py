"""Command-line flags that pick a dataset: a file or the synthetic fleet."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from harstream import ConfigError
from pipeline.cli.checks import int_list, only_with, positive_float, positive_int, probability
from streams.datasets.resample import DEFAULT_MAX_GAP_MS

if TYPE_CHECKING:
    from pathlib import Path

    from streams.datasets.base import StreamDataset
    from streams.datasets.generic import LoadOptions
    from streams.units import Units

SYNTHETIC = {"devices": 20, "duration_s": 120.0, "gap_prob": 0.001}
"""the synthetic fleet's flags and their defaults (the flags are refused with a file)"""
FILE_FLAGS = ("rate", "max_gap_ms", "time_unit", "units", "strict", "per_device")
"""the generic reader's flags (refused with synthetic data and the UCI files)"""


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
    f = parser.add_argument_group(
        "CSV/NPZ files",
        "irregular timestamps (repeats, jitter, pauses) are resampled onto a regular grid; "
        "acceleration in m/s² and angular rate in deg/s are converted to g and rad/s",
    )
    f.add_argument("--rate", type=positive_float, default=None,
                   help="Hz of the grid the file is resampled onto (default: the model's; "
                   "train: 50, or the --start model's)")  # fmt: skip
    f.add_argument("--max-gap-ms", type=positive_float, default=None,
                   help=f"a pause longer than this is a gap, not interpolated "
                   f"(default {DEFAULT_MAX_GAP_MS:g})")  # fmt: skip
    f.add_argument(
        "--time-unit",
        choices=("auto", "s", "ms", "us", "ns"),
        default=None,
        help="of the timestamp column (default auto: the unit giving 2-2,000 Hz)",
    )
    f.add_argument("--units", default=None, metavar="acc=UNIT,gyro=UNIT",
                   help="the file's units, acc=g|m/s2, gyro=rad/s|deg/s (default: detected "
                   "from the magnitudes)")  # fmt: skip
    f.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="no resampling: refuse timestamps off the grid or repeated",
    )
    f.add_argument(
        "--per-device",
        action="store_true",
        default=None,
        help="print what resampling did to each device",
    )


def check_dataset_args(args: argparse.Namespace) -> None:
    """Refuse a missing dataset file, a format no reader takes, or synthetic flags with a file,
    before anything is loaded."""
    from streams.datasets import SyntheticConfig, dataset_path  # the datasets: not at start-up

    path = dataset_path(args.dataset)
    flags = {dest: "--" + dest.replace("_", "-") for dest in SYNTHETIC}
    only_with(args, path is None, "to --dataset synthetic", **flags)
    if path is None:
        SyntheticConfig(**_synthetic(args))  # refuses a fleet with no samples, ...
    generic = _generic(path)
    flags = {dest: "--" + dest.replace("_", "-") for dest in FILE_FLAGS}
    only_with(args, generic, "to a CSV/NPZ --dataset", **flags)
    if generic:
        _options(args, None)  # refuses bad --units, a --strict with a --max-gap-ms, ...


def _synthetic(args: argparse.Namespace) -> dict[str, object]:
    """The synthetic fleet's options: the flags given, else their defaults, and the seed."""
    given = {key: default if getattr(args, key) is None else getattr(args, key)
             for key, default in SYNTHETIC.items()}  # fmt: skip
    return {**given, "seed": args.seed}


def _generic(path: Path | None) -> bool:
    """Whether ``path`` is read by the generic reader (not synthetic, not a UCI file)."""
    from streams.datasets import HAPT_FILE, HAR_FILE  # the datasets package: not at start-up

    return path is not None and not path.name.endswith((HAR_FILE, HAPT_FILE))


def _options(
    args: argparse.Namespace, rate_hz: float | None, to_units: Units | None = None
) -> LoadOptions:
    """The generic reader's options from the flags; ``rate_hz`` when ``--rate`` is not given,
    values converted to ``to_units`` (default g and rad/s)."""
    from streams.datasets.generic import LoadOptions  # the datasets package: not at start-up
    from streams.units import Units  # numpy: not at start-up

    if args.strict and args.max_gap_ms is not None:
        raise ConfigError("--max-gap-ms does not apply with --strict (no resampling)")
    given = {"rate_hz": args.rate or rate_hz, "time_unit": args.time_unit,
             "max_gap_ms": args.max_gap_ms, "strict": args.strict,
             "units": Units.parse(args.units) if args.units else None,
             "to_units": to_units}  # fmt: skip
    return LoadOptions(**{k: v for k, v in given.items() if v is not None})


def dataset_from_args(
    args: argparse.Namespace, rate_hz: float | None = None, units: Units | None = None
) -> StreamDataset:
    """Load the dataset the flags name (a CSV/NPZ file on a grid at ``--rate``, else
    ``rate_hz``, else its own rate, in ``units``), say on stderr what was converted and
    resampled, and apply the user and device filters."""
    from streams.datasets import dataset_path, load_dataset  # the datasets: not at start-up

    if args.dataset == "synthetic":
        kwargs = _synthetic(args)
    elif _generic(dataset_path(args.dataset)):
        kwargs = {"options": _options(args, rate_hz, units)}
    else:
        kwargs = {}
    data = load_dataset(args.dataset, **kwargs)
    for note in data.notes:
        print(f"{data.name}: {note}", file=sys.stderr)
    if args.per_device and data.resampling is not None:
        for device in data.resampling.devices:
            print("  " + device.line(), file=sys.stderr)
    if args.users:
        data = data.select_users(args.users)
    if args.max_devices is not None:
        data = data.with_streams(data.streams[: args.max_devices])
    return data
