"""The real UCI HAR and HAPT files: stitched streams, counts from the data README, user split."""

from __future__ import annotations

import numpy as np
import pytest

from streams.datasets import HAPT_TEST_USERS, split_by_user
from streams.datasets.uci_har import HOP, WINDOW

pytestmark = pytest.mark.dataset


def test_har_windows_as_stored(har_windows):
    w = har_windows
    assert w.X_train.shape == (7352, 128, 9) and w.X_test.shape == (2947, 128, 9)
    assert w.X_train.dtype == np.float32
    assert w.y_train.dtype == np.int8  # kept as stored
    assert np.bincount(w.y_test).tolist() == [496, 471, 420, 491, 532, 537]
    assert w.channels[-1] == "total_acc_z" and w.activities[-1] == "LAYING"
    assert w.rate_hz == 50.0


@pytest.mark.parametrize(("split", "segments"), [("train", 600), ("test", 257)])
def test_har_stitching_reproduces_every_window(har_windows, split, segments):
    w = har_windows
    ds = w.streams(split)
    X, y = getattr(w, f"X_{split}"), getattr(w, f"y_{split}")
    subject = getattr(w, f"subject_{split}")
    rows = w.segment_rows(split)
    assert len(ds.streams) == len(rows) == segments
    assert sorted(np.concatenate(rows).tolist()) == list(range(X.shape[0]))  # each row once
    assert ds.n_samples == HOP * (X.shape[0] + segments)
    assert len({s.device for s in ds.streams}) == segments
    for stream, chain in zip(ds.streams, rows, strict=True):
        assert stream.values.shape == (HOP * (len(chain) + 1), 9)
        assert stream.labels.dtype == np.int16 and stream.user == subject[chain[0]]
        assert stream.device.startswith(f"har-{split}-u{stream.user:02d}-")
        windows = np.lib.stride_tricks.sliding_window_view(stream.values, (WINDOW, 9))[::HOP, 0]
        np.testing.assert_array_equal(windows, X[chain])
        np.testing.assert_array_equal(stream.labels[::HOP][1:], y[chain])
    assert ds.users == tuple(sorted(set(subject.tolist())))


def test_har_test_split_is_the_official_one(har_windows):
    assert tuple(np.unique(har_windows.subject_test).tolist()) == HAPT_TEST_USERS
    assert not set(har_windows.subject_train.tolist()) & set(HAPT_TEST_USERS)


def test_hapt_streams_match_the_readme(hapt):
    assert len(hapt.streams) == 61
    assert hapt.n_samples == 1_122_772
    assert hapt.rate_hz == 50.0
    assert hapt.channels == ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
    assert len(hapt.activities) == 12 and hapt.activities[6] == "STAND_TO_SIT"
    assert hapt.streams[0].device == "hapt-e01-u01"
    assert len({s.device for s in hapt.streams}) == 61
    assert {s.t0_ms for s in hapt.streams} == {hapt.streams[0].t0_ms}  # a fleet, side by side
    lengths = [s.n for s in hapt.streams]
    assert min(lengths) == 9_898 and max(lengths) == 32_089
    labels = np.concatenate([s.labels for s in hapt.streams])
    assert labels.dtype == np.int16
    assert int((labels == -1).sum()) == 307_158
    assert np.bincount(labels[labels >= 0])[:6].tolist() == [
        122_091,
        116_707,
        107_961,
        126_677,
        138_105,
        136_865,
    ]
    acc = np.concatenate([s.values[:, :3] for s in hapt.streams])
    assert abs(np.linalg.norm(acc, axis=1).mean() - 1.034) < 0.001


def test_hapt_split_by_user(hapt):
    assert hapt.users == tuple(range(1, 31))
    per_user = np.bincount([s.user for s in hapt.streams])
    assert per_user[10] == 3 and (np.delete(per_user[1:], 9) == 2).all()
    train, test = split_by_user(hapt)
    assert test.users == HAPT_TEST_USERS
    assert not set(train.users) & set(HAPT_TEST_USERS)
    assert len(train.streams) + len(test.streams) == 61
    assert train.n_samples + test.n_samples == 1_122_772
