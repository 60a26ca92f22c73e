"""The kafka-python compat shims: the version check, and a clear error when internals are gone."""

from __future__ import annotations

import pytest

from streams.exceptions import TransportError
from streams.kafka_compat import (
    KafkaVersionWarning,
    ThreadedRebalanceListener,
    check_version,
    version_tuple,
)


def test_versions_outside_the_tested_range_warn():
    assert version_tuple("3.0.12") == (3, 0, 12) and version_tuple("3.1.0.dev") == (3, 1, 0)
    assert check_version("3.0.9") and check_version("3.0.12")
    for untested in ("3.0.8", "3.1.0.dev", "3.1.0", "2.2.15"):
        with pytest.warns(KafkaVersionWarning, match=f"kafka-python {untested} is untested"):
            assert not check_version(untested)


class _Hook:
    def on_assigned(self, partitions) -> None: ...

    def on_revoked(self, partitions) -> None: ...


class _Loop31:
    """An IO loop as kafka-python 3.1's: ``call_soon`` only."""

    def call_soon(self, task) -> None: ...


class _Consumer31:
    _net = _Loop31()


def test_missing_internals_fail_when_the_listener_is_set_up():
    with pytest.raises(TransportError, match="call_soon_threadsafe.*kafka-python>=3.0.9,<3.1"):
        ThreadedRebalanceListener(_Hook(), _Consumer31())
