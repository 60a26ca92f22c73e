"""Encode and decode throughput of both wire codecs, in samples per second."""

from __future__ import annotations

import numpy as np

from pipeline.bench.timing import median_seconds
from streams.codecs import CodecConfig, make_codec
from streams.record import Record


def bench_codecs(
    samples_per_record: tuple[int, ...] = (1, 25, 100),
    channels: int = 6,
    records: int = 1000,
    repeats: int = 5,
) -> list[dict[str, object]]:
    """One row per (codec, samples per record): median encode and decode samples/s."""
    rng = np.random.default_rng(0)
    rows = []
    for n in samples_per_record:
        batch = [
            Record(
                f"device-{i:05d}",
                i * n,
                1_700_000_000_000 + i * 20 * n,
                50.0,
                rng.normal(size=(n, channels)).astype(np.float32),
                rng.integers(0, 6, n).astype(np.int16),
            )
            for i in range(records)
        ]
        for name in ("binary", "json"):
            codec = make_codec(name, CodecConfig(channels=channels, max_samples=max(n, 1)))
            wire = [codec.encode(r) for r in batch]
            enc = median_seconds(lambda c=codec, rs=batch: [c.encode(r) for r in rs], repeats)
            dec = median_seconds(lambda c=codec, w=wire: [c.decode(b) for b in w], repeats)
            rows.append(
                {
                    "bench": "codec",
                    "codec": name,
                    "samples_per_record": n,
                    "channels": channels,
                    "bytes_per_sample": round(sum(map(len, wire)) / (records * n), 1),
                    "encode_samples_per_s": round(records * n / enc),
                    "decode_samples_per_s": round(records * n / dec),
                    "encode_records_per_s": round(records / enc),
                    "decode_records_per_s": round(records / dec),
                }
            )
    return rows
