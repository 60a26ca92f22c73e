"""The sequencer applies each sample once, in order, holding records that come after a gap."""

from __future__ import annotations

import numpy as np

from pipeline.worker.sequencer import Pending, Sequencer, SequencerConfig
from streams.protocols import TopicPartition
from streams.record import Record

TP = TopicPartition("sensor.raw", 0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _rec(seq, n=5, device="d"):
    values = np.arange(seq, seq + n, dtype=np.float32)[:, None].repeat(2, axis=1)
    return Record(device, seq, 1000 + 20 * seq, 50.0, values)


def _pending(records, offset=0, received=0.0):
    return [Pending(r, TP, offset + i, received, 1e12 + i) for i, r in enumerate(records)]


class Cursor:
    """Stands in for the state store's last applied sequence numbers and event times."""

    def __init__(self):
        self.last, self.time = {}, {}

    def __call__(self, devices):
        return (np.array([self.last.get(d, -1) for d in devices]),
                np.array([self.time.get(d, np.nan) for d in devices]))  # fmt: skip

    def apply(self, runs):
        for run in runs:
            assert run.restart or run.seqs[0] > self.last.get(run.device, -1)
            self.last[run.device] = int(run.seqs[-1])
            self.time[run.device] = float(run.times_ms[-1])


def test_in_order_duplicates_and_overlaps():
    seq, cursor = Sequencer(clock=Clock()), Cursor()
    runs = seq.sequence(_pending([_rec(0), _rec(5), _rec(5), _rec(3, n=4)]), cursor)
    cursor.apply(runs)
    assert [r.seqs.tolist() for r in runs] == [list(range(10))]
    assert seq.stats.duplicates == 1  # the repeated record; the overlapping one adds 5..6
    np.testing.assert_array_equal(runs[0].values[:, 0], np.arange(10))
    assert runs[0].times_ms[3] == 1000 + 20 * 3


def test_reordered_across_batches_is_held_then_applied_in_order():
    clock, cursor = Clock(), Cursor()
    seq = Sequencer(clock=clock)
    cursor.apply(seq.sequence(_pending([_rec(0)]), cursor))
    runs = seq.sequence(_pending([_rec(10)], offset=7), cursor)  # 5..9 is late
    assert runs == [] and seq.held_records == 1
    assert seq.held_offsets() == {TP: 7}
    runs = seq.sequence(_pending([_rec(5)], offset=9), cursor)
    cursor.apply(runs)
    assert [r.seqs.tolist() for r in runs] == [list(range(5, 15))]
    assert seq.held_records == 0 and seq.stats.gaps == 0


def test_a_real_gap_is_applied_after_the_hold_time():
    clock, cursor = Clock(), Cursor()
    seq = Sequencer(SequencerConfig(hold_s=2.0), clock=clock)
    cursor.apply(seq.sequence(_pending([_rec(0)]), cursor))
    assert seq.sequence(_pending([_rec(12)], received=0.0), cursor) == []
    clock.now = 2.5
    runs = seq.sequence([], cursor)
    cursor.apply(runs)
    assert runs[0].seqs[0] == 12 and runs[0].gap_before == 7
    assert seq.stats.gaps == 1 and seq.stats.missing_samples == 7
    late = seq.sequence(_pending([_rec(5)]), cursor)  # its place has passed
    assert late == [] and seq.stats.duplicates == 1


def test_hold_by_record_count_and_drop_policy():
    cursor = Cursor()
    seq = Sequencer(SequencerConfig(hold_records=2), clock=Clock())
    cursor.apply(seq.sequence(_pending([_rec(0)]), cursor))
    assert seq.sequence(_pending([_rec(10)]), cursor) == []
    runs = seq.sequence(_pending([_rec(15)]), cursor)  # two waiting: due
    assert [r.seqs.tolist() for r in runs] == [list(range(10, 20))]
    dropping = Sequencer(SequencerConfig(late="drop"))
    cursor = Cursor()
    cursor.apply(dropping.sequence(_pending([_rec(0)]), cursor))
    assert dropping.sequence(_pending([_rec(10)]), cursor)[0].gap_before == 5


def test_a_run_stops_at_a_gap_and_the_rest_follows_next_call():
    cursor = Cursor()
    seq = Sequencer(SequencerConfig(late="drop"), clock=Clock())
    runs = seq.sequence(_pending([_rec(0), _rec(20)]), cursor)
    cursor.apply(runs)
    assert [r.seqs.tolist() for r in runs] == [list(range(5))]
    runs = seq.sequence([], cursor)
    assert runs[0].seqs[0] == 20 and runs[0].gap_before == 15


def test_new_device_not_starting_at_zero_waits_for_earlier_records():
    cursor = Cursor()
    seq = Sequencer(clock=Clock())
    assert seq.sequence(_pending([_rec(5, device="late")]), cursor) == []
    runs = seq.sequence(_pending([_rec(0, device="late")]), cursor)
    assert runs[0].seqs.tolist() == list(range(10))


def test_flush_applies_everything_held():
    cursor = Cursor()
    seq = Sequencer(clock=Clock())
    cursor.apply(seq.sequence(_pending([_rec(0)]), cursor))
    assert seq.sequence(_pending([_rec(30)]), cursor) == []
    runs = seq.sequence([], cursor, flush=True)
    assert runs[0].seqs[0] == 30 and seq.held_records == 0


def test_a_gap_after_applied_records_is_still_held():
    clock, cursor = Clock(), Cursor()
    seq = Sequencer(clock=clock)
    runs = seq.sequence(_pending([_rec(0), _rec(10)]), cursor)  # 5..9 reordered behind
    cursor.apply(runs)
    assert [r.seqs.tolist() for r in runs] == [list(range(5))]
    assert seq.sequence([], cursor) == [] and seq.held_records == 1  # still waiting
    runs = seq.sequence(_pending([_rec(5)]), cursor)
    assert [r.seqs.tolist() for r in runs] == [list(range(5, 15))]


def _later(seq, n=5, t0=60_000):
    """A record of ``d`` after a restart: counting from ``seq`` again, a minute on."""
    rec = _rec(seq, n)
    return Record(rec.device, seq, t0 + 20 * seq, 50.0, rec.values + 100)


def test_a_device_that_counts_again_from_zero_starts_a_new_stream():
    cursor, seq = Cursor(), Sequencer(clock=Clock())
    cursor.apply(seq.sequence(_pending([_rec(0), _rec(5)]), cursor))
    assert seq.sequence(_pending([_rec(5)]), cursor) == []  # redelivered: a duplicate
    runs = seq.sequence(_pending([_later(0), _later(5)]), cursor)
    cursor.apply(runs)
    assert [(r.seqs.tolist(), r.restart) for r in runs] == [(list(range(10)), True)]
    assert runs[0].values[0, 0] == 100 and runs[0].times_ms[0] == 60_000
    assert seq.stats.restarts == 1 and seq.stats.duplicates == 1
    runs = seq.sequence(_pending([_later(10)]), cursor)  # the new count goes on as usual
    assert [(r.seqs[0], r.restart) for r in runs] == [(10, False)]


def test_the_old_count_ends_before_the_new_one_begins_in_one_batch():
    cursor, seq = Cursor(), Sequencer(clock=Clock())
    cursor.apply(seq.sequence(_pending([_rec(0)]), cursor))
    runs = seq.sequence(_pending([_later(0), _rec(5), _later(5), _rec(5)]), cursor)
    cursor.apply(runs)
    assert [(r.seqs.tolist(), r.restart) for r in runs] == [(list(range(5, 10)), False)]
    assert seq.held_records == 2  # the new stream: next call, after the reset
    runs = seq.sequence([], cursor)
    assert [(r.seqs.tolist(), r.restart) for r in runs] == [(list(range(10)), True)]
    assert seq.stats.duplicates == 1 and seq.held_records == 0


def test_a_restart_not_at_zero_waits_like_a_new_device():
    clock, cursor = Clock(), Cursor()
    seq = Sequencer(SequencerConfig(hold_s=2.0), clock=clock)
    cursor.apply(seq.sequence(_pending([_rec(0), _rec(5), _rec(10)]), cursor))
    assert seq.sequence(_pending([_later(3)], received=0.0), cursor) == []
    clock.now = 3.0
    runs = seq.sequence([], cursor)
    assert [(r.seqs.tolist(), r.restart) for r in runs] == [(list(range(3, 8)), True)]
