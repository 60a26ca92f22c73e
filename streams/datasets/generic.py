"""The format anyone can bring: one row per sample in a CSV or NPZ file.

Columns: ``device`` (id), ``timestamp`` (s, ms, µs or ns; absolute or from any start), one
column per channel, and optionally ``label`` (activity name; empty = not annotated) and ``user``
(integer, for splits). An NPZ file holds one 1-D array per column under the same names. The
timestamps may be irregular (repeats, bursts, jitter, pauses): each device's stream is
resampled onto a regular grid (:mod:`streams.datasets.resample`).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "fleet.csv"
>>> _ = path.write_text("device,timestamp,acc_x,label\\nd1,1000,0.5,WALKING\\nd1,1040,0.7,\\n")
>>> ds = load_generic(path, rate_hz=50)  # the sample at 1020 ms is missing: interpolated
>>> ds.channels, ds.activities, ds.streams[0].sequence().tolist(), ds.streams[0].labels.tolist()
(('acc_x',), ('WALKING',), [0, 1, 2], [0, 0, -1])
"""

from __future__ import annotations

import csv
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from streams.datasets.base import DeviceStream, StreamDataset
from streams.datasets.resample import (
    DEFAULT_MAX_GAP_MS,
    ResampleReport,
    TimeUnit,
    regularise,
    to_ms,
)
from streams.exceptions import DatasetError
from streams.record import UNLABELLED
from streams.units import Units
from streams.units import detect as detect_units

DEVICE, TIMESTAMP, LABEL, USER = "device", "timestamp", "label", "user"
RESERVED_COLUMNS = (DEVICE, TIMESTAMP, LABEL, USER)
"""Column names that are never channels."""

_Where = Callable[[int], str]


@dataclass(frozen=True)
class LoadOptions:
    """How a generic file's timestamps and units are read."""

    rate_hz: float | None = None
    """the grid to resample onto (default: the native rate, 1000 / the median timestamp step
    refined by the mean of the regular steps, snapped to a whole Hz within 0.5 %)"""
    max_gap_ms: float = DEFAULT_MAX_GAP_MS
    """a pause longer than this is a gap in the sequence numbers, never interpolated"""
    time_unit: TimeUnit = "auto"
    """of the ``timestamp`` column: s, ms, us, ns, or auto (the one giving 2-2,000 Hz)"""
    strict: bool = False
    """no resampling: timestamps must sit on the grid; two on one grid point are an error"""
    units: Units | None = None
    """the file's units (default: detected from the values' magnitudes)"""
    to_units: Units = Units()
    """the units the dataset is converted to"""

    def __post_init__(self) -> None:
        if not self.max_gap_ms > 0:
            raise DatasetError(f"max_gap_ms must be positive, not {self.max_gap_ms}")
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise DatasetError(f"rate_hz must be positive, not {self.rate_hz}")


def load_generic(
    path: str | os.PathLike[str],
    *,
    channels: Sequence[str] | None = None,
    activities: Sequence[str] | None = None,
    rate_hz: float | None = None,
    options: LoadOptions | None = None,
) -> StreamDataset:
    """The streams of a generic CSV or NPZ file, one per device, each sorted by timestamp and
    regularised (:mod:`streams.datasets.resample`) onto a grid at ``rate_hz`` (shorthand for
    ``options.rate_hz``), in ``options.to_units``.

    ``channels`` picks and orders the channel columns (default: every other column, in file
    order). ``activities`` fixes the label codes (default: the sorted distinct names; a name
    not in the list is an error). The dataset's ``notes`` say what was converted and resampled;
    its ``resampling`` has the figures per device.
    """
    options = options or LoadOptions()
    if rate_hz is not None:
        options = replace(options, rate_hz=rate_hz)
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        columns, where = _read_csv(path)
    elif suffix == ".npz":
        columns, where = _read_npz(path)
    else:
        raise DatasetError(f"{path}: generic datasets are .csv or .npz files")
    return _build(path, columns, where, channels, activities, options)


def save_generic(dataset: StreamDataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` to a ``.csv`` or ``.npz`` file that :func:`load_generic` reads back.

    Timestamps are ``t0_ms + seq * 1000 / rate_hz``; the ``user`` column is written when every
    stream has a user; unlabelled samples get an empty label.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise DatasetError(f"{path}: generic datasets are .csv or .npz files")
    clash = set(dataset.channels) & set(RESERVED_COLUMNS)
    if clash or len(set(dataset.channels)) != len(dataset.channels):
        raise DatasetError(f"{path}: channel names must be unique and not {RESERVED_COLUMNS}")
    streams = dataset.streams
    names = np.asarray([*dataset.activities, ""], dtype=str)
    for s in streams:
        if np.any((s.labels < UNLABELLED) | (s.labels >= len(dataset.activities))):
            raise DatasetError(f"{s.device}: label code outside the dataset's activities")
    columns: dict[str, np.ndarray] = {
        DEVICE: np.repeat(
            np.asarray([s.device for s in streams], dtype=str), [s.n for s in streams]
        ),
        TIMESTAMP: np.concatenate(
            [s.t0_ms + s.sequence() * (1000.0 / s.rate_hz) for s in streams] or [np.zeros(0)]
        ),
    }
    if streams and all(s.user is not None for s in streams):
        columns[USER] = np.repeat(np.asarray([s.user for s in streams]), [s.n for s in streams])
    values = np.concatenate(
        [s.values for s in streams] or [np.zeros((0, len(dataset.channels)), np.float32)]
    )
    for i, channel in enumerate(dataset.channels):
        columns[channel] = values[:, i]
    # -1 (unlabelled) indexes the trailing "" of names.
    columns[LABEL] = names[np.concatenate([s.labels for s in streams] or [np.zeros(0, np.int16)])]
    write_columns(columns, path)


def write_columns(columns: dict[str, np.ndarray], path: Path) -> None:
    """Write 1-D ``columns`` as a generic ``.csv`` or ``.npz`` file (whole-number timestamps as
    integers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        np.savez_compressed(path, **columns)
        return
    ts = columns[TIMESTAMP]
    if np.all(ts == np.round(ts)):
        columns = {**columns, TIMESTAMP: ts.astype(np.int64)}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*(c.astype(str).tolist() for c in columns.values()), strict=True))


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], _Where]:
    """The columns of a CSV file: NumPy's C parser first, the ``csv`` module to explain errors.

    Blank lines are skipped; line numbers in errors count data rows from line 2.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if header is None:
        raise DatasetError(f"{path}: empty file, expected a header row")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise DatasetError(f"{path}: duplicate column names in the header")
    try:
        columns = _parse_csv_fast(path, header)
    except (ValueError, UserWarning):
        columns = _parse_csv_exact(path, header)
    return columns, lambda i: f"line {i + 2}"


def _parse_csv_fast(path: Path, header: list[str]) -> dict[str, np.ndarray]:
    """Text columns as str, the others as float64; ValueError or UserWarning if irregular."""
    text = [i for i, name in enumerate(header) if name in (DEVICE, LABEL)]
    numeric = [i for i in range(len(header)) if i not in text]
    options = {"delimiter": ",", "skiprows": 1, "quotechar": '"', "comments": None, "ndmin": 2}
    columns: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "input contained no data"
        for dtype, which in ((str, text), (np.float64, numeric)):
            if which:
                block = np.loadtxt(path, dtype=dtype, usecols=which, encoding="utf-8", **options)
                columns.update((header[i], block[:, k]) for k, i in enumerate(which))
    return {name: columns[name] for name in header}


def _parse_csv_exact(path: Path, header: list[str]) -> dict[str, np.ndarray]:
    """Every column as str, row by row, naming the first line with the wrong number of fields."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [row for row in csv.reader(f) if row][1:]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise DatasetError(
                f"{path}: line {i + 2} has {len(row)} fields, the header has {len(header)}"
            )
    cells = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    return {name: np.asarray(col, dtype=str) for name, col in zip(header, cells, strict=True)}


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], _Where]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from exc
    lengths = {a.shape for a in columns.values()}
    if len(lengths) > 1 or any(a.ndim != 1 for a in columns.values()):
        raise DatasetError(f"{path}: every array must be a 1-D column of the same length")
    return columns, lambda i: f"row {i}"


def _build(
    path: Path,
    columns: dict[str, np.ndarray],
    where: _Where,
    channels: Sequence[str] | None,
    activities: Sequence[str] | None,
    options: LoadOptions,
) -> StreamDataset:
    for required in (DEVICE, TIMESTAMP):
        if required not in columns:
            raise DatasetError(f"{path}: no {required!r} column")
    if channels is None:
        channels = [c for c in columns if c not in RESERVED_COLUMNS]
        if not channels:
            raise DatasetError(f"{path}: no channel columns besides {RESERVED_COLUMNS}")
    else:
        missing = [c for c in channels if c not in columns or c in RESERVED_COLUMNS]
        if not channels or missing:
            raise DatasetError(f"{path}: no channel column for {missing or 'any channel'}")
    devices = columns[DEVICE].astype(str)
    n = devices.shape[0]
    if n == 0:
        raise DatasetError(f"{path}: no data rows")
    empty = np.flatnonzero(np.char.str_len(np.char.strip(devices)) == 0)
    if empty.size:
        raise DatasetError(f"{path}: {where(int(empty[0]))} has an empty device id")
    ts = _numbers(path, TIMESTAMP, columns[TIMESTAMP], where, np.float64)
    values = np.stack([_numbers(path, c, columns[c], where, np.float32) for c in channels], 1)
    names = tuple(activities) if activities is not None else None
    labels, names = _labels(path, columns.get(LABEL), names, where, n)
    users = _numbers(path, USER, columns[USER], where, np.float64) if USER in columns else None

    dev_names, dev_of_row = np.unique(devices, return_inverse=True)
    order = np.lexsort((ts, dev_of_row))
    cuts = np.cumsum(np.bincount(dev_of_row, minlength=dev_names.size))[:-1]
    groups = np.split(order, cuts)
    ts, unit = to_ms(ts, groups, options.time_unit)
    rate = float(options.rate_hz) if options.rate_hz is not None else _infer_rate(path, ts, groups)
    if not rate > 0:
        raise DatasetError(f"{path}: rate_hz must be positive, not {rate}")
    values, notes = _convert_units(values, channels, options)
    streams, reports = [], []
    for device, rows in zip(dev_names.tolist(), groups, strict=True):
        t = ts[rows]
        if options.strict:
            seq, vals, labs = (
                _on_grid(path, device, t, rate, rows, where),
                values[rows],
                labels[rows],
            )
        else:
            seq, vals, labs, report = regularise(t, values[rows], labels[rows], rate,
                                                 options.max_gap_ms, device)  # fmt: skip
            reports.append(report)
            if seq.size == 0:
                continue
        user = None
        if users is not None:
            u = users[rows]
            if np.any(u != u[0]) or u[0] != np.round(u[0]):
                raise DatasetError(f"{path}: device {device!r} has no single integer user")
            user = int(u[0])
        streams.append(DeviceStream(device, vals, labs, rate, int(round(t[0])), user, seq=seq))
    resampling = ResampleReport(rate, unit, options.max_gap_ms, tuple(reports)) if reports else None
    if resampling is not None and resampling.changed:
        notes = (*notes, resampling.summary())
    return StreamDataset(path.stem, tuple(channels), names, rate, tuple(streams),
                         units=options.to_units, notes=notes, resampling=resampling)  # fmt: skip


def _on_grid(path: Path, device: str, t: np.ndarray, rate: float, rows: np.ndarray,
             where: _Where) -> np.ndarray:  # fmt: skip
    """Sequence numbers of timestamps ``t`` at ``rate``; two on one grid point are an error."""
    seq = np.rint((t - t[0]) * (rate / 1000.0)).astype(np.int64)
    bad = np.flatnonzero(np.diff(seq) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise DatasetError(
            f"{path}: device {device!r}, {where(int(rows[i]))}: timestamp {float(t[i])!r} "
            f"repeats sample {seq[i - 1]} at {rate:g} Hz (duplicate or too-close timestamps)"
        )
    return seq


def _convert_units(
    values: np.ndarray, channels: Sequence[str], options: LoadOptions
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``values`` in ``options.to_units``, from the declared units or those they look like."""
    if options.units is not None:
        found, why = options.units, "declared"
    else:
        found, why = detect_units(values, channels)
        why = f"detected: {why}" if why else "assumed"
    scale = options.to_units.scale_from(found, channels)
    if np.all(scale == 1.0):
        return values, (f"units {found} ({why})",)
    return values * scale, (f"units {found} ({why}) converted to {options.to_units}",)


def _numbers(path: Path, name: str, column: np.ndarray, where: _Where, dtype: type) -> np.ndarray:
    """``column`` as finite numbers of ``dtype``, or a DatasetError naming the first bad row."""
    try:
        out = column.astype(dtype)
    except (ValueError, TypeError):
        for i, cell in enumerate(column.tolist()):
            try:
                float(cell)
            except (ValueError, TypeError):
                raise DatasetError(
                    f"{path}: column {name!r}, {where(i)}: {cell!r} is not a number"
                ) from None
        raise DatasetError(f"{path}: column {name!r} is not numeric") from None
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(f"{path}: column {name!r}, {where(i)}: {column[i].item()} is not finite")
    return out


def _labels(
    path: Path,
    column: np.ndarray | None,
    activities: tuple[str, ...] | None,
    where: _Where,
    n: int,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-row label codes (-1 where empty) and the activity names they index."""
    if column is None:
        return np.full(n, UNLABELLED, np.int16), activities or ()
    if column.dtype.kind not in "US":
        raise DatasetError(f"{path}: the {LABEL!r} column must hold activity names")
    names = np.char.strip(column.astype(str))
    distinct, inverse = np.unique(names, return_inverse=True)
    if activities is None:
        activities = tuple(str(a) for a in distinct if a)
    code = {a: i for i, a in enumerate(activities)}
    code[""] = UNLABELLED
    unknown = [str(a) for a in distinct if a not in code]
    if unknown:
        i = int(np.flatnonzero(names == unknown[0])[0])
        raise DatasetError(
            f"{path}: {where(i)}: label {unknown[0]!r} is not one of the activities {activities}"
        )
    lookup = np.asarray([code[str(a)] for a in distinct], dtype=np.int16)
    return lookup[inverse.reshape(-1)], activities


def _infer_rate(path: Path, ts: np.ndarray, groups: list[np.ndarray]) -> float:
    steps = np.concatenate([np.diff(ts[rows]) for rows in groups])
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DatasetError(
            f"{path}: cannot infer the sample rate from the timestamps; give rate_hz"
        )
    median = float(np.median(steps))
    regular = steps[(steps > 0.5 * median) & (steps < 1.5 * median)]
    rate = 1000.0 / float(regular.mean())
    whole = round(rate)
    return float(whole) if whole > 0 and abs(rate - whole) <= 0.005 * rate else rate
