"""Settings: defaults < TOML file < HARSTREAM_* environment < flags, with clear errors."""

from __future__ import annotations

import pytest

from pipeline.exceptions import ConfigError
from pipeline.settings import describe, load_settings


def test_precedence_file_env_flags(tmp_path):
    path = tmp_path / "worker.toml"
    path.write_text(
        '[kafka]\nbootstrap_servers = "file:9092"\ngroup_id = "from-file"\n'
        '[worker]\nemit = "every"\nevery_k = 5\n'
    )
    env = {"HARSTREAM_KAFKA_GROUP_ID": "from-env", "HARSTREAM_WORKER_EVERY_K": "7"}
    s = load_settings(path, env, {"worker": {"every_k": 9, "emit": None}})
    assert s.kafka.bootstrap_servers == "file:9092"  # file over default
    assert s.kafka.group_id == "from-env"  # env over file
    assert s.worker.every_k == 9  # flag over env
    assert s.worker.emit == "every"  # an unset flag does not override
    assert s.worker.input_topic == "sensor.raw"  # default
    assert load_settings(None, {}).kafka.security_protocol == "PLAINTEXT"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[worker]\nemit = 'sometimes'\n", {}, "must be one of"),
        ("[worker]\nevery_k = 'many'\n", {}, "not a int"),
        ("[nope]\nx = 1\n", {}, "unknown section"),
        ("[worker]\ncolour = 'red'\n", {}, "unknown setting"),
        ("not toml [", {}, "worker.toml"),
        ("", {"HARSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
    ],
)
def test_bad_settings_are_explained(tmp_path, text, env, message):
    path = tmp_path / "worker.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env)


def test_missing_file_and_description():
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings("/nonexistent.toml", {})
    text = describe()
    assert "HARSTREAM_KAFKA_BOOTSTRAP_SERVERS" in text and "[model]" in text


def test_kafka_group_settings_reach_the_consumer_config(tmp_path):
    from pipeline.cli.commands.run import group_config

    path = tmp_path / "worker.toml"
    path.write_text("[kafka]\nsession_timeout_ms = 6000\nconnect_timeout_s = 5\n")
    k = load_settings(path, {}).kafka
    source = group_config(k, "g", max_poll_interval_ms=60_000)
    assert (source.group_id, source.session_timeout_ms) == ("g", 6000)
    assert source.heartbeat_interval_ms == 2000 and source.max_poll_interval_ms == 60_000
    assert k.connect_timeout_s == 5.0
