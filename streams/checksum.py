"""Order-independent sample checksums, so both ends of a replay can account for every sample."""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_SEQ_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def _channel_muls(channels: int) -> np.ndarray:
    # distinct odd multipliers per channel: swapping two channels changes the sum
    return (np.arange(channels, dtype=np.uint64) * np.uint64(2) + np.uint64(1)) * _MIX


def sample_checksum(seqs: np.ndarray, values: np.ndarray) -> int:
    """Sum over samples of a hash of (sequence number, float32 bit pattern of every channel).

    Addition modulo 2**64 makes the result independent of the order and the chunking in which
    samples arrive, while any changed value, lost sample or shifted sequence number changes it.

    >>> v = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> s = np.arange(3)
    >>> sample_checksum(s, v) == sample_checksum(s[::-1], v[::-1])
    True
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        per_sample = (bits * _channel_muls(bits.shape[1])).sum(axis=1, dtype=np.uint64)
        per_sample ^= np.asarray(seqs, dtype=np.int64).view(np.uint64) * _SEQ_MUL
        per_sample *= _MIX
        per_sample ^= per_sample >> np.uint64(31)
        return int(per_sample.sum(dtype=np.uint64) & _MASK)
