"""Local broker plumbing that needs no JVM: tool checks, generated config, cluster ids."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from streams import local_kafka
from streams.exceptions import BrokerError
from streams.local_kafka import (
    LocalKafka,
    LocalKafkaConfig,
    ensure_jars,
    main,
    random_cluster_id,
    render_properties,
    server_properties,
)


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_kafka.shutil, "which", lambda _name: None)


@pytest.fixture
def empty_libs(tmp_path: Path) -> LocalKafkaConfig:
    pom = tmp_path / "pom.xml"
    shutil.copy(local_kafka.KAFKA_DIR / "pom.xml", pom)
    return LocalKafkaConfig(pom_dir=tmp_path, libs_dir=tmp_path / "libs", work_root=tmp_path)


def test_missing_mvn_is_a_one_line_error(no_tools, empty_libs) -> None:
    with pytest.raises(BrokerError) as caught:
        ensure_jars(empty_libs)
    message = str(caught.value)
    assert message.startswith("mvn not found: install Maven")
    assert "\n" not in message


def test_missing_java_is_a_one_line_error(no_tools, empty_libs) -> None:
    with pytest.raises(BrokerError) as caught:
        LocalKafka(empty_libs).start()
    message = str(caught.value)
    assert message == "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
    assert list(empty_libs.work_root.glob("harstream-kafka-*")) == []


def test_cli_reports_missing_tool_without_traceback(no_tools, empty_libs, monkeypatch, capsys):
    monkeypatch.setattr(local_kafka, "LocalKafkaConfig", lambda: empty_libs)
    assert main(["jars"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: mvn not found")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_jars_are_reused_while_the_marker_matches_the_pom(no_tools, empty_libs) -> None:
    empty_libs.libs_dir.mkdir()
    digest = local_kafka.hashlib.sha256((empty_libs.pom_dir / "pom.xml").read_bytes()).hexdigest()
    (empty_libs.libs_dir / ".complete").write_text(digest + "\n")
    assert ensure_jars(empty_libs) == empty_libs.libs_dir  # no mvn needed


def test_server_properties_listen_on_loopback_only(tmp_path: Path) -> None:
    config = LocalKafkaConfig(default_partitions=3, broker_properties={"log.retention.ms": 1000})
    props = server_properties(config, tmp_path, 21001, 21002)

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:21001,CONTROLLER://127.0.0.1:21002"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:21001"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:21002"
    assert "controller.quorum.voters" not in props  # `format --standalone` rejects it
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"].startswith(str(tmp_path))
    assert props["num.partitions"] == "3"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.retention.ms"] == "1000"
    text = render_properties(props)
    assert "listeners=PLAINTEXT://127.0.0.1:21001,CONTROLLER://127.0.0.1:21002\n" in text


def test_broker_properties_are_read_only() -> None:
    config = LocalKafkaConfig(broker_properties={"a": "1"})
    with pytest.raises(TypeError):
        config.broker_properties["a"] = "2"  # type: ignore[index]


def test_cluster_id_looks_like_a_kafka_uuid() -> None:
    for _ in range(200):
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", random_cluster_id())


def test_free_ports_stay_below_the_ephemeral_range() -> None:
    low = local_kafka._ephemeral_low()
    ports = local_kafka._free_ports("127.0.0.1", 2)
    assert len(set(ports)) == 2 and all(port < low for port in ports)
