"""The label joiner: tapes per device, labels inline and from ranges, windows when ready."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.trainer.labelling import (
    JoinConfig,
    LabelError,
    LabelJoiner,
    LabelRange,
    parse_label_message,
)
from streams.record import Record

C = 3
CLASSES = ["sitting", "walking", "running"]


def _values(seqs, device="d"):
    """Sample values that say which device and sequence number they are."""
    seqs = np.asarray(seqs, np.float32)
    return np.stack([seqs, seqs * 2, np.full_like(seqs, len(device))], axis=1)


def _rec(seq, n, device="d", labels=None, seqs=None):
    """``n`` samples from ``seq`` at 50 Hz (sample ``s`` at ``1000 + 20 * s`` ms)."""
    s = np.arange(seq, seq + n) if seqs is None else np.asarray(seqs)
    lab = None if labels is None else np.broadcast_to(np.asarray(labels, np.int16), (n,)).copy()
    return Record(
        device, seq, 1000 + 20 * seq, 50.0, _values(s, device), lab, None if seqs is None else s
    )


def _joiner(**config):
    return LabelJoiner(C, JoinConfig(**config))


def _firsts(values):
    """Each window's sequence numbers (channel 0)."""
    return values[..., 0].astype(int).tolist()


def test_inline_labelled_records_of_several_devices_give_their_windows_in_order():
    rng = np.random.default_rng(0)
    src = {d: (rng.normal(size=(100, C)).astype(np.float32), rng.integers(0, 3, 100, np.int16))
           for d in ("a", "bb", "ccc")}  # fmt: skip
    joiner = _joiner(window=16, stride=16)
    got = {d: ([], []) for d in src}
    cuts = [0, 7, 30, 31, 64, 90, 100]
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        for d, (values, labels) in src.items():
            joiner.add_record(Record(d, lo, 20 * lo, 50.0, values[lo:hi], labels[lo:hi]))
        devices, values, labels = joiner.ready()
        assert values.dtype == np.float32 and labels.dtype == np.int16
        for d, v, lab in zip(devices, values, labels, strict=True):
            got[d][0].append(v)
            got[d][1].append(lab)
    for d, (values, labels) in src.items():
        assert len(got[d][0]) == 6  # 96 of 100 samples; 4 wait for the next window
        np.testing.assert_array_equal(np.concatenate(got[d][0]), values[:96])
        np.testing.assert_array_equal(np.concatenate(got[d][1]), labels[:96])
    assert joiner.stats.windows == 18 and joiner.stats.samples == 300
    assert joiner.stats.records == 18 and joiner.pending_samples == 12


def test_redelivered_and_overlapping_records_do_not_duplicate_samples():
    joiner = _joiner(window=4, stride=4)
    for seq, n in ((0, 10), (5, 10), (0, 10), (15, 5), (12, 3)):
        joiner.add_record(_rec(seq, n, labels=1))
    devices, values, labels = joiner.ready()
    assert _firsts(values) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15],
                               [16, 17, 18, 19]]  # fmt: skip
    assert joiner.stats.samples == 20 and joiner.stats.duplicates == 5 + 10 + 3


def test_a_big_gap_restarts_the_tape_and_a_small_one_is_bridged():
    joiner = _joiner(window=4, stride=4, max_gap=5)
    joiner.add_record(_rec(0, 6, "big", labels=0))
    joiner.add_record(_rec(20, 8, "big", labels=0))  # 14 missing: 4 and 5 cannot make a window
    joiner.add_record(_rec(0, 6, "small", labels=0))
    joiner.add_record(_rec(8, 6, "small", labels=0))  # 2 missing: bridged
    # a jump inside one record restarts as well
    joiner.add_record(_rec(0, 10, "inner", labels=0, seqs=[0, 1, 2, 3, 4, 5, 30, 31, 32, 33]))
    devices, values, _ = joiner.ready()
    by = {d: [w for dd, w in zip(devices, _firsts(values), strict=True) if dd == d]
          for d in ("big", "small", "inner")}  # fmt: skip
    assert by["big"] == [[0, 1, 2, 3], [20, 21, 22, 23], [24, 25, 26, 27]]
    assert by["small"] == [[0, 1, 2, 3], [4, 5, 8, 9], [10, 11, 12, 13]]
    assert by["inner"] == [[0, 1, 2, 3], [30, 31, 32, 33]]
    assert joiner.stats.gaps == 2


def test_label_ranges_apply_to_samples_before_and_after_them():
    joiner = _joiner(window=4, stride=4)
    joiner.add_record(_rec(0, 8, "late"))
    assert joiner.ready()[0] == []
    joiner.add_labels(LabelRange("late", 1000.0, 1080.0, 2))  # samples 0..3
    devices, values, labels = joiner.ready()
    assert (
        devices == ["late"] and _firsts(values) == [[0, 1, 2, 3]] and labels.tolist() == [[2] * 4]
    )

    joiner.add_labels(LabelRange("early", 1000.0, 1200.0, 1))  # samples 0..9
    joiner.add_labels(LabelRange("early", 1040.0, 1060.0, 0))  # newer: sample 2
    joiner.add_record(_rec(0, 4, "early", labels=[-1, 2, -1, -1]))  # inline 2 stays
    joiner.add_record(_rec(4, 4, "early"))
    devices, values, labels = joiner.ready()
    assert devices == ["early"] * 2 and labels.tolist() == [[1, 2, 0, 1], [1, 1, 1, 1]]
    assert joiner.stats.label_ranges == 3


def test_windows_without_enough_labels_wait_then_go_or_are_dropped():
    joiner = _joiner(window=4, stride=4, max_wait_ms=100.0, min_labelled=0.5)
    joiner.add_record(_rec(0, 4, labels=[1, -1, -1, -1]))  # 25 %: will be dropped
    joiner.add_record(_rec(4, 4, labels=[2, 2, -1, -1]))  # 50 %: will be kept
    assert joiner.ready()[0] == []  # newest 1140 ms, first window ends 1060: still waiting
    joiner.add_record(_rec(8, 2))  # newest 1180 ms: the first window has waited 120 ms
    assert joiner.ready()[0] == [] and joiner.stats.dropped_windows == 1
    joiner.add_record(_rec(10, 3))  # newest 1240: the second (ends 1140) waited 100: not over
    assert joiner.ready()[0] == []
    joiner.add_record(_rec(13, 1))
    devices, values, labels = joiner.ready()
    assert _firsts(values) == [[4, 5, 6, 7]] and labels.tolist() == [[2, 2, -1, -1]]
    assert joiner.stats.windows == 1 and joiner.stats.dropped_windows == 1


def test_stride_shorter_than_the_window_overlaps_and_longer_skips():
    overlap = _joiner(window=4, stride=2)
    for seq in range(10):
        overlap.add_record(_rec(seq, 1, labels=0))
    assert _firsts(overlap.ready()[1]) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]

    skip = _joiner(window=2, stride=5)
    got = []
    for seq in range(13):  # one sample at a time: the skipped ones arrive after the cut
        skip.add_record(_rec(seq, 1, labels=0))
        got += _firsts(skip.ready()[1])
    assert got == [[0, 1], [5, 6], [10, 11]]


def test_a_restart_ends_the_skip_between_windows():
    joiner = _joiner(window=2, stride=6, max_gap=3)
    joiner.add_record(_rec(0, 3, labels=0))
    assert _firsts(joiner.ready()[1]) == [[0, 1]]  # next window would start at 6
    joiner.add_record(_rec(10, 3, labels=0))  # a new tape starts at 10
    assert _firsts(joiner.ready()[1]) == [[10, 11]]


def test_a_device_that_counts_again_from_zero_starts_a_new_tape():
    joiner = _joiner(window=4, stride=4)
    joiner.add_record(_rec(0, 6, labels=1))
    joiner.add_record(_rec(0, 6, labels=1))  # redelivered: dropped
    again = _rec(0, 6, labels=2)  # rebooted a minute later: counting from 0 again
    joiner.add_record(Record("d", 0, 61_000, 50.0, again.values + 100, again.labels))
    devices, values, labels = joiner.ready()
    assert _firsts(values) == [[0, 1, 2, 3], [100, 101, 102, 103]]  # none spans the restart
    assert labels[:, 0].tolist() == [1, 2] and joiner.stats.restarts == 1
    assert joiner.stats.duplicates == 6 and joiner.stats.samples == 12


def test_max_pending_bounds_the_samples_held():
    joiner = _joiner(window=4, stride=4, max_pending=8, max_wait_ms=1e9)
    for seq in range(0, 100, 5):
        joiner.add_record(_rec(seq, 5))  # unlabelled: everything waits
        joiner.ready()
        assert joiner.pending_samples <= 8
    joiner.add_record(_rec(100, 50))  # one record longer than the bound
    assert joiner.pending_samples == 8 and joiner.stats.overflow == 150 - 8
    joiner.add_labels(LabelRange("d", 0.0, 1e9, 1))
    assert _firsts(joiner.ready()[1]) == [[142, 143, 144, 145], [146, 147, 148, 149]]


def test_a_record_with_other_channels_is_refused():
    joiner = _joiner()
    with pytest.raises(LabelError, match="2 channels, not 3"):
        joiner.add_record(Record("d", 0, 0, 50.0, np.zeros((4, 2), np.float32)))


def test_parse_label_message_accepts_names_codes_and_the_key():
    msg = b'{"device": "d1", "start_ms": 10, "end_ms": 20.5, "activity": "running"}'
    assert parse_label_message(b"d1", msg, CLASSES) == LabelRange("d1", 10.0, 20.5, 2)
    assert parse_label_message(None, msg, CLASSES).device == "d1"
    by_key = b'{"start_ms": 0, "end_ms": 1, "activity": 1}'
    assert parse_label_message(b"k", by_key, CLASSES) == LabelRange("k", 0.0, 1.0, 1)
    folded = b'{"start_ms": 0, "end_ms": 1, "activity": "Walking"}'
    assert parse_label_message(b"k", folded, CLASSES).label == 1


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"d", b"{not json", "invalid JSON"),
        (b"d", b"\xff\xfe\x00", "invalid JSON"),
        (b"d", b"[1, 2]", "JSON object"),
        (b"d", b'{"start_ms": 0, "activity": 1}', "missing end_ms"),
        (None, b'{"start_ms": 0, "end_ms": 1, "activity": 1}', "no device"),
        (b"d", b'{"device": "e", "start_ms": 0, "end_ms": 1, "activity": 1}', "does not match"),
        (None, b'{"device": 7, "start_ms": 0, "end_ms": 1, "activity": 1}', "non-empty string"),
        (b"\xff", b'{"start_ms": 0, "end_ms": 1, "activity": 1}', "not UTF-8"),
        (b"d", b'{"start_ms": 5, "end_ms": 5, "activity": 1}', "not after"),
        (b"d", b'{"start_ms": 5, "end_ms": 1, "activity": 1}', "not after"),
        (b"d", b'{"start_ms": NaN, "end_ms": 1, "activity": 1}', "finite"),
        (b"d", b'{"start_ms": 0, "end_ms": 1e999, "activity": 1}', "finite"),
        (b"d", b'{"start_ms": "0", "end_ms": 1, "activity": 1}', "number"),
        (b"d", b'{"start_ms": true, "end_ms": 1, "activity": 1}', "number"),
        (b"d", b'{"start_ms": 0, "end_ms": 1, "activity": "flying"}', "unknown activity"),
        (b"d", b'{"start_ms": 0, "end_ms": 1, "activity": 3}', "not in 0..2"),
        (b"d", b'{"start_ms": 0, "end_ms": 1, "activity": -1}', "not in 0..2"),
        (b"d", b'{"start_ms": 0, "end_ms": 1, "activity": 1.0}', "name or code"),
    ],
)
def test_parse_label_message_rejects(key, value, reason):
    with pytest.raises(LabelError, match=reason):
        parse_label_message(key, value, CLASSES)
