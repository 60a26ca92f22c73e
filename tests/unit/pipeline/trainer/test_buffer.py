"""The training buffer: bounded, balanced eviction, stable holdout split, atomic save/load."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.exceptions import PipelineError
from pipeline.trainer import buffer as training_buffer
from pipeline.trainer.buffer import (
    BufferConfig,
    TrainingBuffer,
    TrainingBufferError,
    is_holdout,
)

W, C = 4, 2


def _windows(ids, classes):
    """Windows whose every value is the window's id, fully labelled with its class."""
    ids = np.asarray(ids, np.float32)
    values = np.broadcast_to(ids[:, None, None], (len(ids), W, C)).copy()
    labels = np.repeat(np.asarray(classes, np.int16)[:, None], W, axis=1)
    return values, labels


def _buffer(capacity, holdout=0.0):
    return TrainingBuffer(C, BufferConfig(capacity=capacity, window=W, holdout_percent=holdout))


def _ids(windows):
    return windows.values[:, 0, 0].astype(int).tolist()


def test_keeps_everything_under_capacity_in_arrival_order():
    buf = _buffer(capacity=500)
    for start in (0, 100, 200):  # grows past the first allocation by doubling
        values, labels = _windows(range(start, start + 100), [start // 100] * 100)
        assert buf.add([f"d{start}"] * 100, values, labels) == 100
    got = buf.windows(holdout=False)
    assert len(buf) == buf.added == 300 and buf.evicted == 0 and len(buf.windows(True)) == 0
    assert _ids(got) == list(range(300)) and got.devices[:2] == ("d0", "d0")
    assert got.values.dtype == np.float32 and got.labels.dtype == np.int16
    np.testing.assert_array_equal(got.labels[150], [1] * W)
    assert buf.class_counts(4).tolist() == [100, 100, 100, 0] and buf.devices() == 3


def test_skips_windows_without_a_labelled_sample():
    buf = _buffer(capacity=10)
    values, labels = _windows(range(3), [0, 1, 2])
    labels[1] = -1
    labels[2, 1:] = -1  # one labelled sample is enough
    assert buf.add(["a", "b", "c"], values, labels) == 2
    assert len(buf) == 2 and _ids(buf.windows(False)) == [0, 2]
    np.testing.assert_array_equal(buf.windows(False).labels[1], [2, -1, -1, -1])


def test_majority_class_is_the_most_frequent_labelled_code():
    buf = _buffer(capacity=10)
    values, _ = _windows([0, 1], [0, 0])
    labels = np.array([[3, -1, -1, 1], [-1, 2, 2, 1]], np.int16)
    buf.add(["a", "a"], values, labels)
    assert buf.class_counts(4).tolist() == [0, 1, 1, 0]  # tie 3 vs 1 -> 1; 2 beats 1


def test_a_flood_from_one_device_and_class_does_not_push_out_the_rest():
    buf = _buffer(capacity=30)
    devices = [d for d in "abc" for _ in range(6)]
    classes = [k for _ in "abc" for k in (0, 0, 1, 1, 2, 2)]
    buf.add(devices, *_windows(range(18), classes))
    flood = range(100, 1100)
    assert buf.add(["a"] * 1000, *_windows(flood, [0] * 1000)) == 1000
    assert len(buf) == 30 and buf.added == 1018 and buf.evicted == 1000 - 12
    assert buf.class_counts(3).tolist() == [18, 6, 6] and buf.devices() == 3
    kept = dict(zip(_ids(buf.windows(False)), buf.windows(False).devices, strict=True))
    others = [i for i, (d, k) in enumerate(zip(devices, classes, strict=True)) if d != "a" or k]
    assert set(others) <= set(kept)  # every window of b and c, and a's other classes
    assert sorted(i for i in kept if i >= 100) == list(range(1100 - 14, 1100))  # a's newest


def test_eviction_takes_the_oldest_window_of_the_largest_device_in_the_largest_class():
    buf = _buffer(capacity=6)
    buf.add(["z", "x", "y", "x", "z", "x"], *_windows(range(6), [1, 1, 0, 1, 0, 1]))
    buf.add(["y"], *_windows([6], [0]))  # class 1 (4) -> device x (3) -> x's oldest: window 1
    assert _ids(buf.windows(False)) == [0, 2, 3, 4, 5, 6]
    buf.add(["q"], *_windows([7], [1]))  # classes tie 3:3 -> class 0, device y (2) -> window 2
    assert _ids(buf.windows(False)) == [0, 3, 4, 5, 6, 7] and buf.evicted == 2


def test_holdout_is_stable_by_device_and_near_the_requested_share():
    # crc32, not Python's salted hash(): the same ids are held out in every process
    assert [i for i in range(30) if is_holdout(f"dev-{i}", 20.0)] == [3, 6, 8, 9, 11, 14, 20, 21]
    share = np.mean([is_holdout(f"dev-{i}", 20.0) for i in range(1000)])
    assert 0.15 <= share <= 0.25
    assert not any(is_holdout(f"dev-{i}", 0.0) for i in range(100))

    buf = _buffer(capacity=1000, holdout=20.0)
    devices = [f"dev-{i % 50}" for i in range(400)]
    buf.add(devices, *_windows(range(400), [0] * 400))
    held, train = buf.windows(holdout=True), buf.windows(holdout=False)
    assert len(held) + len(train) == 400 and not set(held.devices) & set(train.devices)
    assert (buf.count(holdout=True), buf.count(holdout=False)) == (len(held), len(train))
    assert all(is_holdout(d, 20.0) for d in held.devices)
    assert not any(is_holdout(d, 20.0) for d in train.devices)
    assert all(devices[i] == d for i, d in zip(_ids(held), held.devices, strict=True))


def test_save_and_load_round_trip(tmp_path):
    buf = _buffer(capacity=8, holdout=20.0)
    names = [f"dev-{i}" for i in range(12)]
    buf.add(names, *_windows(range(12), [i % 3 for i in range(12)]))
    path = tmp_path / "buffer.npz"
    buf.save(path)
    back = TrainingBuffer.load(path, C, buf.config)
    assert (len(back), back.added, back.evicted, back.devices()) == (8, 12, 4, buf.devices())
    np.testing.assert_array_equal(back.class_counts(3), buf.class_counts(3))
    for holdout in (True, False):
        a, b = buf.windows(holdout), back.windows(holdout)
        assert a.devices == b.devices
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.labels, b.labels)
    for each in (buf, back):  # eviction goes on exactly as it would have
        each.add(["new"], *_windows([99], [0]))
    assert _ids(back.windows(False)) == _ids(buf.windows(False))
    with np.load(path, allow_pickle=False) as data:
        assert data["device_names"].dtype.kind == "U"


def test_load_cuts_a_larger_file_down_by_the_eviction_rule(tmp_path):
    buf = _buffer(capacity=10)
    buf.add(["a"] * 6 + ["b"] * 4, *_windows(range(10), [0] * 6 + [1] * 4))
    buf.save(tmp_path / "b.npz")
    small = TrainingBuffer.load(tmp_path / "b.npz", C, BufferConfig(4, W, 0.0))
    assert _ids(small.windows(False)) == [5, 7, 8, 9] and small.evicted == 6


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "buffer.npz"
    old = _buffer(capacity=4)
    old.add(["a"], *_windows([1], [0]))
    old.save(path)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    new = _buffer(capacity=4)
    new.add(["b", "b"], *_windows([2, 3], [1, 1]))
    monkeypatch.setattr(training_buffer.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]
    assert _ids(TrainingBuffer.load(path, C, old.config).windows(False)) == [1]
    new.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]
    assert _ids(TrainingBuffer.load(path, C, old.config).windows(False)) == [2, 3]


def test_load_refuses_a_buffer_of_another_shape(tmp_path):
    buf = _buffer(capacity=4)
    buf.add(["a"], *_windows([1], [0]))
    buf.save(tmp_path / "b.npz")
    with pytest.raises(TrainingBufferError, match=r"shape \(4, 2\).*takes \(4, 3\)"):
        TrainingBuffer.load(tmp_path / "b.npz", 3, buf.config)
    with pytest.raises(TrainingBufferError, match=r"shape \(4, 2\).*takes \(8, 2\)"):
        TrainingBuffer.load(tmp_path / "b.npz", C, BufferConfig(4, 8))


def test_load_refuses_corrupt_files_and_passes_a_missing_one_through(tmp_path):
    buf = _buffer(capacity=4)
    buf.add(["a", "b"], *_windows([1, 2], [0, 1]))
    good = tmp_path / "good.npz"
    buf.save(good)
    truncated, garbage, plain, partial = (tmp_path / n for n in ("t.npz", "g", "p.npy", "k.npz"))
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage.write_bytes(b"not a buffer at all")
    np.save(plain, np.zeros(3))
    with np.load(good) as data:
        arrays = dict(data)
    np.savez(partial, **{k: v for k, v in arrays.items() if k != "arrival"})
    bad_index = tmp_path / "i.npz"
    np.savez(bad_index, **{**arrays, "device": np.array([0, 7], np.int32)})
    for path, reason in ((truncated, "not a readable"), (garbage, "not a readable"),
                         (plain, "not an .npz"), (partial, "missing arrival"),
                         (bad_index, "device indices")):  # fmt: skip
        with pytest.raises(TrainingBufferError, match=reason) as err:
            TrainingBuffer.load(path, C, buf.config)
        assert isinstance(err.value, PipelineError) and str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        TrainingBuffer.load(tmp_path / "absent.npz", C, buf.config)


def test_add_checks_shapes():
    buf = _buffer(capacity=4)
    values, labels = _windows([1, 2], [0, 0])
    with pytest.raises(TrainingBufferError, match=r"values \(1, 4, 2\)"):
        buf.add(["a"], values, labels)
