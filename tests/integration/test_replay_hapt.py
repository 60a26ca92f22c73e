"""All of UCI HAPT through the real broker and back: every sample accounted for."""

from __future__ import annotations

import pytest

from pipeline.cli.drain import Drainer
from streams.accounting import compare_tallies
from streams.admin import TopicSpec, ensure_topics
from streams.codecs import CodecConfig, make_codec
from streams.datasets import load_uci_hapt
from streams.kafka_config import KafkaConfig
from streams.kafka_sink import KafkaSink
from streams.kafka_source import KafkaSource, SourceConfig
from streams.replay import FaultConfig, ReplayConfig, replay

pytestmark = [pytest.mark.kafka, pytest.mark.dataset]


@pytest.fixture(scope="module")
def hapt():
    return load_uci_hapt()


def _round_trip(kafka_bootstrap, unique_topic, data, config: ReplayConfig):
    kafka = KafkaConfig(kafka_bootstrap)
    ensure_topics(kafka, [TopicSpec(config.topic, partitions=6)])
    sink = KafkaSink(kafka)
    report = replay(data, sink, config)
    sink.close()
    source = KafkaSource(kafka, [config.topic], SourceConfig(group_id=unique_topic("g")))
    drainer = Drainer(source, make_codec("auto", CodecConfig(channels=len(data.channels))))
    finished = drainer.run(lambda d: d.messages >= report.records_sent, timeout_s=300)
    source.close()
    assert finished, f"consumed {drainer.messages} of {report.records_sent} messages"
    return report, drainer


def test_all_of_hapt_replayed_through_the_broker(kafka_bootstrap, unique_topic, hapt):
    assert hapt.n_samples == 1_122_772 and len(hapt.streams) == 61
    config = ReplayConfig(topic=unique_topic("hapt"), samples_per_record=50)
    report, drainer = _round_trip(kafka_bootstrap, unique_topic, hapt, config)
    assert report.samples_sent == hapt.n_samples
    assert drainer.rejected == {}
    assert drainer.ledger.samples == hapt.n_samples  # no duplicates without faults
    received = drainer.ledger.tallies()
    assert len(received) == 61
    assert compare_tallies(report.expected, received) == []
    assert sum(t.samples for t in received.values()) == 1_122_772


def test_faulty_replay_still_accounts_for_every_valid_sample(kafka_bootstrap, unique_topic, hapt):
    faults = FaultConfig(drop=0.01, duplicate=0.02, reorder=0.02, nan_burst=0.005, corrupt=0.005)
    test_users = hapt.select_users([2, 4, 9])
    config = ReplayConfig(topic=unique_topic("faulty"), samples_per_record=25, faults=faults)
    report, drainer = _round_trip(kafka_bootstrap, unique_topic, test_users, config)
    assert sum(drainer.rejected.values()) == report.invalid_sent > 0
    assert set(drainer.rejected) <= {"non_finite", "truncated", "bad_magic"}
    assert drainer.ledger.samples > report.expected_samples  # duplicates arrived...
    assert compare_tallies(report.expected, drainer.ledger.tallies()) == []  # ...counted once
    assert drainer.ledger.conflicts() == 0
