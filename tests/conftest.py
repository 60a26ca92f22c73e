"""Shared fixtures. Kafka tests are marked ``@pytest.mark.kafka`` and use ``kafka_bootstrap``.

Set ``KAFKA_BOOTSTRAP=host:port`` to run them against an existing cluster (e.g. one from
``make kafka-up``); otherwise the first Kafka test starts a local broker for the session. Tests
that take ``kafka_client`` run once per client library (kafka-python, confluent-kafka).
"""

from __future__ import annotations

import importlib.util
import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.local_kafka import LocalKafka


@pytest.fixture(scope="session")
def _local_kafka() -> Iterator[LocalKafka | None]:
    """The session's own broker, or ``None`` when ``KAFKA_BOOTSTRAP`` names an external one."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield None
        return
    with LocalKafka() as broker:  # fetches the jars first if needed
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(_local_kafka: LocalKafka | None) -> str:
    """``host:port`` of the Kafka cluster the tests run against."""
    return _local_kafka.bootstrap if _local_kafka is not None else os.environ["KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka_broker(_local_kafka: LocalKafka | None) -> LocalKafka:
    """The session's local broker, for tests that restart it."""
    if _local_kafka is None:
        pytest.skip(
            "needs the local broker (restarts it) but KAFKA_BOOTSTRAP names an external one"
        )
    return _local_kafka


@pytest.fixture(scope="module", params=["kafka-python", "confluent"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The Kafka client library a test runs with (``KafkaConfig.client``, ``[kafka] client``):
    each test that takes it runs with both. Module-scoped so that module fixtures (a reference
    run) may use it; confluent-kafka is the ``fast`` extra, skipped when it is not installed."""
    if request.param == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        pytest.skip("confluent-kafka is not installed: pip install 'harstream[fast]'")
    return request.param


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory of topic names no other test (or earlier run on the same cluster) uses."""

    def make(name: str = "") -> str:
        base = re.sub(r"[^a-zA-Z0-9._-]+", "-", name or request.node.name).strip("-")
        return f"t-{base[:80]}-{uuid.uuid4().hex[:8]}"

    return make
