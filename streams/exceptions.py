"""Errors raised by ``streams``: all derive from :class:`harstream.HarstreamError`.

An out-of-range config value (a codec name, a replay's fault probabilities, a bus size, a
``kafka://`` URL) raises :class:`~harstream.ConfigError`, defined once in ``harstream`` for all
three packages and re-exported here; it is a ``ValueError`` too, as :class:`DecodeError` is.
"""

from __future__ import annotations

from typing import Literal, get_args

from harstream import ConfigError, HarstreamError

__all__ = [
    "DECODE_REASONS",
    "BrokerError",
    "ConfigError",
    "DatasetError",
    "DecodeError",
    "DecodeReason",
    "StreamsError",
    "TransportError",
]

DecodeReason = Literal[
    "truncated",
    "bad_magic",
    "bad_version",
    "channel_mismatch",
    "non_finite",
    "oversize",
    "invalid_json",
    "missing_field",
    "bad_field_type",
    "bad_value",
    "empty_chunk",
    "non_increasing_seq",
]
DECODE_REASONS: tuple[str, ...] = get_args(DecodeReason)


class StreamsError(HarstreamError):
    """Root of the errors raised by the ``streams`` package."""


class DecodeError(StreamsError, ValueError):
    """A wire record was rejected; ``reason`` is one of :data:`DECODE_REASONS`."""

    def __init__(self, reason: DecodeReason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class DatasetError(StreamsError):
    """A dataset file is missing or not in the expected form."""


class TransportError(StreamsError):
    """A source or sink could not reach or use its transport (Kafka, in-memory queue)."""


class BrokerError(StreamsError):
    """The local Kafka broker could not be installed, started or stopped."""
