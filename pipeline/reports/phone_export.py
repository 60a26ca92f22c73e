"""A realistic "phone export" made from real recordings, for tests and the model report.

Real phones do not send UCI HAPT: they sample at about 100 Hz with jittered timestamps, deliver
in bursts (a timestamp repeated when samples arrive together), pause now and then, report
acceleration in m/s², and sit in a pocket or a hand at any angle, upside down included. This
module turns recordings (by default the UCI HAPT test users) into such an export in the generic
CSV/NPZ format, reproducibly from a seed::

    python -m pipeline.reports.phone_export --out phone.csv [--seed 0] [--max-seconds 60]

Each recording is resampled to ``rate_hz`` (linear interpolation of the 50 Hz signal), turned
by one rotation drawn uniformly over all orientations (acceleration and gyroscope together, as
one phone), converted to ``units``, and given timestamps ``t0 + i / rate_hz`` plus Gaussian
jitter; then delivery bursts repeat the previous timestamp for ``repeat_prob`` of the samples,
and ``pause_prob`` of the samples start a pause of 50-190 ms whose samples are lost.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.augment import axis_groups, uniform_rotations
from streams.datasets.base import StreamDataset
from streams.datasets.generic import DEVICE, LABEL, TIMESTAMP, USER, write_columns
from streams.datasets.splits import HAPT_TEST_USERS
from streams.datasets.uci_hapt import load_uci_hapt
from streams.exceptions import DatasetError
from streams.units import Units


@dataclass(frozen=True)
class PhoneExport:
    """How recordings are made to look like a phone's export."""

    rate_hz: float = 100.0
    jitter_ms: float = 1.5
    """standard deviation of the timestamp noise (clipped at ±3 of them)"""
    repeat_prob: float = 0.085
    """samples delivered with the previous sample's timestamp"""
    pause_prob: float = 0.003
    """samples that start a delivery pause of ``pause_ms`` (its samples are lost)"""
    pause_ms: tuple[float, float] = (50.0, 190.0)
    units: Units = field(default_factory=lambda: Units("m/s2", "rad/s"))
    rotate: bool = True
    """each recording turned by a uniformly random rotation"""
    max_seconds: float | None = None
    """keep only the first this many seconds of each recording"""
    seed: int = 0


def export(dataset: StreamDataset, config: PhoneExport = PhoneExport()) -> dict[str, np.ndarray]:
    """The generic-format columns of ``dataset``'s streams as phones would have sent them
    (``dataset`` in g and rad/s, regular, as the UCI readers return it)."""
    rng = np.random.default_rng(config.seed)
    groups = axis_groups(dataset.channels)
    scale = config.units.scale_from(dataset.units, dataset.channels)
    parts: list[dict[str, np.ndarray]] = []
    for s in dataset.streams:
        src_t = s.sequence() * (1000.0 / s.rate_hz)
        end = src_t[-1] if config.max_seconds is None else min(src_t[-1], config.max_seconds * 1e3)
        t = np.arange(0.0, end + 1e-9, 1000.0 / config.rate_hz)
        values = np.stack(
            [np.interp(t, src_t, s.values[:, c]) for c in range(s.values.shape[1])], 1
        )
        labels = s.labels[np.searchsorted(src_t, t, side="right") - 1]
        if config.rotate:
            turn = uniform_rotations(1, rng)[0]
            for g in groups:
                values[:, list(g)] = values[:, list(g)] @ turn.T
        keep, stamps = _delivery(t, config, rng)
        names = np.asarray([*dataset.activities, ""])
        parts.append({
            DEVICE: np.full(keep.sum(), s.device),
            TIMESTAMP: s.t0_ms + np.round(stamps[keep]),
            **({USER: np.full(keep.sum(), s.user)} if s.user is not None else {}),
            **{c: (values[keep, i] * scale[i]).astype(np.float32)
               for i, c in enumerate(dataset.channels)},
            LABEL: names[labels[keep]],
        })  # fmt: skip
    if not parts:
        raise DatasetError("no recordings to export")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _delivery(
    t: np.ndarray, config: PhoneExport, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Which samples arrive (not lost in a pause) and the timestamps they arrive with."""
    n = t.size
    jitter = np.clip(rng.normal(0.0, config.jitter_ms, n), -3 * config.jitter_ms,
                     3 * config.jitter_ms)  # fmt: skip
    stamps = t + jitter
    keep = np.ones(n, bool)
    for start in np.flatnonzero(rng.random(n) < config.pause_prob):
        keep[(t > t[start]) & (t <= t[start] + rng.uniform(*config.pause_ms))] = False
    repeat = rng.random(n) < config.repeat_prob
    repeat[0] = False
    for i in np.flatnonzero(repeat):  # a burst: the previous sample's timestamp again
        stamps[i] = stamps[i - 1]
    return keep, np.maximum.accumulate(stamps)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.reports.phone_export",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the .csv or .npz file to write")
    p.add_argument("--hapt", type=Path, default=None, help="uci_hapt_raw.npz (default: data dir)")
    p.add_argument(
        "--users",
        default=",".join(map(str, HAPT_TEST_USERS)),
        help="users to export, comma-separated (default: the HAPT test users)",
    )
    p.add_argument("--rate", type=float, default=PhoneExport.rate_hz, help="Hz (%(default)s)")
    p.add_argument("--max-seconds", type=float, default=None, help="per recording")
    p.add_argument("--upright", action="store_true", help="no rotation")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.out.suffix.lower() not in (".csv", ".npz"):
        p.error("--out must end in .csv or .npz")
    config = PhoneExport(rate_hz=args.rate, max_seconds=args.max_seconds,
                         rotate=not args.upright, seed=args.seed)  # fmt: skip
    data = load_uci_hapt(args.hapt)
    if args.users != "all":
        data = data.select_users(int(u) for u in args.users.split(",") if u.strip())
    columns = export(data, config)
    write_columns(columns, args.out)
    print(f"{args.out}: {len(data.streams)} recordings, {columns[DEVICE].size:,} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
