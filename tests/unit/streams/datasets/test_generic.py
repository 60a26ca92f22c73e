"""The generic CSV/NPZ format: round trips, rate inference, grouping and every error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.datasets import load_generic, save_generic
from streams.datasets.generic import LoadOptions
from streams.exceptions import DatasetError


def _times(stream):
    return stream.t0_ms + stream.sequence() * 1000.0 / stream.rate_hz


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_round_trip_keeps_values_labels_users_and_gaps(tmp_path: Path, make_fleet, suffix):
    fleet = make_fleet()
    path = tmp_path / f"fleet{suffix}"
    save_generic(fleet, path)
    back = load_generic(path, activities=fleet.activities)

    assert back.channels == fleet.channels
    assert back.activities == fleet.activities
    assert back.rate_hz == 50.0  # inferred from the timestamps
    assert [s.device for s in back.streams] == [s.device for s in fleet.streams]
    for want, got in zip(fleet.streams, back.streams, strict=True):
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(_times(got), _times(want), rtol=0, atol=1e-3)
        np.testing.assert_array_equal(np.diff(got.sequence()), np.diff(want.sequence()))
        assert got.sequence()[0] == 0
        assert got.user == want.user
        assert np.any(np.diff(got.sequence()) > 1)  # the gaps survived


def test_unsorted_interleaved_rows_are_grouped_and_sorted(tmp_path: Path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        "timestamp,device,x,label\n"
        "1020,b,4,WALK\n"
        "1000,a,1,SIT\n"
        "1000,b,3,\n"
        "1020,a,2,WALK\n"
        "1100,a,5,SIT\n"
    )
    ds = load_generic(path)
    assert ds.activities == ("SIT", "WALK")  # sorted distinct names
    assert ds.rate_hz == 50.0
    a, b = ds.streams
    assert (a.device, b.device) == ("a", "b")
    assert a.values[:, 0].tolist() == [1, 2, 5]
    assert a.sequence().tolist() == [0, 1, 5]  # 1100 ms is a 4-sample gap
    assert a.labels.tolist() == [0, 1, 0]
    assert b.labels.tolist() == [-1, 1]
    assert b.sequence().tolist() == [0, 1]
    assert (a.t0_ms, b.t0_ms) == (1000, 1000)
    assert a.user is None


def test_rate_inferred_from_jittery_integer_timestamps(tmp_path: Path):
    k = np.arange(600)
    ts = np.round(k * 1000 / 30)  # 30 Hz rounded to whole ms: steps of 33 and 34
    ts = np.delete(ts, [100, 101, 102])  # a gap
    path = tmp_path / "thirty.csv"
    path.write_text("device,timestamp,x\n" + "".join(f"d,{t:.0f},0\n" for t in ts))
    (stream,) = load_generic(path).streams
    assert stream.rate_hz == 30.0
    np.testing.assert_array_equal(stream.sequence(), np.delete(k, [100, 101, 102]))


def test_channels_argument_selects_and_orders_columns(tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text("device,timestamp,a,b,c\nd,0,1,2,3\nd,20,4,5,6\n")
    ds = load_generic(path, channels=["c", "a"], rate_hz=50)
    assert ds.channels == ("c", "a")
    assert ds.streams[0].values.tolist() == [[3, 1], [6, 4]]


def _write(tmp_path: Path, text: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("timestamp,x\n0,1\n", {}, "no 'device' column"),
        ("device,x\nd,1\n", {}, "no 'timestamp' column"),
        ("device,timestamp,label\nd,0,SIT\n", {}, "no channel columns"),
        ("device,timestamp,x\nd,0,1\n", {"channels": ["y"], "rate_hz": 50}, "no channel column"),
        ("device,timestamp,x\nd,0,1\nd,20,oops\n", {}, "column 'x', line 3: 'oops'"),
        ("device,timestamp,x\nd,0,1\nd,,2\n", {}, "column 'timestamp', line 3: ''"),
        ("device,timestamp,x\nd,0,1\nd,20,nan\n", {}, "line 3: nan is not finite"),
        ("device,timestamp,x\nd,0,1\nd,20\n", {}, "line 3 has 2 fields"),
        ("device,timestamp,x\n", {}, "no data rows"),
        ("", {}, "empty file"),
        ("device,timestamp,x\n,0,1\n", {}, "line 2 has an empty device id"),
        (
            "device,timestamp,x\nd,0,1\nd,40,2\nd,40,3\n",
            {"rate_hz": 50, "options": LoadOptions(strict=True)},
            "device 'd', line 4: timestamp 40.0 repeats sample 2",
        ),
        (
            "device,timestamp,x\nd,0,1\nd,20,2\nd,25,3\n",
            {"rate_hz": 50, "options": LoadOptions(strict=True)},
            "device 'd', line 4",
        ),
        (
            "device,timestamp,x,label\nd,0,1,SIT\nd,20,2,JUMP\n",
            {"activities": ["SIT", "WALK"]},
            "line 3: label 'JUMP' is not one of the activities",
        ),
        ("device,timestamp,x\nd,0,1\ne,0,2\n", {}, "cannot infer the sample rate"),
        ("device,timestamp,x,user\nd,0,1,1\nd,20,2,2\n", {}, "no single integer user"),
        ("device,timestamp,x,x\nd,0,1,2\n", {}, "duplicate column names"),
    ],
)
def test_bad_csv_raises_a_clear_error(tmp_path: Path, text, kwargs, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_generic(_write(tmp_path, text), **kwargs)


def test_bad_npz_columns(tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, device=np.array(["d", "d"]), timestamp=np.array([0, 20]), x=np.array([1.0]))
    with pytest.raises(DatasetError, match="1-D column of the same length"):
        load_generic(path)
    np.savez(
        path, device=np.array(["d", "d"]), timestamp=np.array([0.0, 20]), x=np.array(["1", "a"])
    )
    with pytest.raises(DatasetError, match="column 'x', row 1: 'a' is not a number"):
        load_generic(path)
    np.savez(path, device=np.array(["d"]), timestamp=np.array([0]), x=np.ones(1), label=np.ones(1))
    with pytest.raises(DatasetError, match="must hold activity names"):
        load_generic(path, rate_hz=50)
    path.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_generic(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path, make_fleet):
    with pytest.raises(DatasetError, match="no such file"):
        load_generic(tmp_path / "absent.csv")
    with pytest.raises(DatasetError, match=r"\.csv or \.npz"):
        load_generic(_write(tmp_path, "device,timestamp,x\n", "data.txt"))
    with pytest.raises(DatasetError, match=r"\.csv or \.npz"):
        save_generic(make_fleet(), tmp_path / "out.parquet")


def test_csv_quirks_quotes_blank_lines_and_ignored_text_columns(tmp_path: Path):
    path = tmp_path / "quirks.csv"
    path.write_text('\ufeffdevice , timestamp,x,note\n"a,1",0," 1.5",hello\n\n"a,1",20,2,"x,y"\n')
    (stream,) = load_generic(path, channels=["x"], rate_hz=50).streams
    assert stream.device == "a,1"
    assert stream.values[:, 0].tolist() == [1.5, 2.0]
    assert stream.labels.tolist() == [-1, -1]
    with pytest.raises(DatasetError, match="column 'note', line 2: 'hello' is not a number"):
        load_generic(path)  # without channels=, "note" would be a channel
