"""``harstream bench engine``'s rows on tiny fleets: the engine rows carry the host's speed, and
every way of delaying labels runs the whole fleet through a worker (the figures themselves are
the benchmark's, not a test's)."""

from __future__ import annotations

from pipeline.bench.engine import bench_delay, bench_engine


def test_the_delay_bench_runs_each_smoother_and_the_refiner():
    rows = bench_delay(devices=12, delays_ms=(0.0, 200.0), seconds=2.0, hidden=8, rounds=1)
    assert [(r["delay_ms"], r["smoother"]) for r in rows] == [
        (0.0, "-"), (200.0, "mean"), (200.0, "hmm"), (200.0, "refined")]  # fmt: skip
    assert all(r["samples_per_s"] > 0 and r["time_vs_first"] > 0 for r in rows)
    assert rows[0]["time_vs_first"] == 1.0


def test_the_engine_rows_carry_the_hosts_gemm_speed_beside_the_rate():
    rows = bench_engine(device_counts=(10, 30), cells=("gru",), hidden=8)
    assert [(r["cell"], r["devices"]) for r in rows] == [("gru", 10), ("gru", 30)]
    assert all(r["device_steps_per_s"] > 0 and r["host_gemm_gflops"] > 0 for r in rows)
