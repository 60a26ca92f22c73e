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
    from pipeline.wiring import group_config

    path = tmp_path / "worker.toml"
    path.write_text("[kafka]\nsession_timeout_ms = 6000\nconnect_timeout_s = 5\n")
    k = load_settings(path, {}).kafka
    source = group_config(k, "g", max_poll_interval_ms=60_000)
    assert (source.group_id, source.session_timeout_ms) == ("g", 6000)
    assert source.heartbeat_interval_ms == 2000 and source.max_poll_interval_ms == 60_000
    assert k.connect_timeout_s == 5.0


def test_each_section_is_the_components_own_config(tmp_path):
    from models.train_config import TrainConfig
    from pipeline.serving import ServingConfig
    from pipeline.settings import load_trainer_settings
    from pipeline.swap.watcher import SwapConfig
    from pipeline.trainer.service import TRAINING, TrainerConfig
    from pipeline.worker import WorkerConfig
    from pipeline.worker.state_store import StoreConfig
    from streams.kafka_config import KafkaConfig

    path, trainer = tmp_path / "worker.toml", tmp_path / "trainer.toml"
    path.write_text(
        '[worker.store]\nmax_gap = 7\n[worker.sequencer]\nlate = "drop"\n[swap]\nprime = "reset"\n'
    )
    trainer.write_text(
        "[trainer]\nmode = 'scratch'\n[trainer.train]\nepochs = 2\n[trainer.gate]\nmargin = 0.1\n"
    )
    env = {"HARSTREAM_WORKER_STORE_IDLE_TTL_S": "9", "HARSTREAM_TRAINER_TRAIN_LANES": "4"}
    s = load_settings(path, env, {"worker": {"store.max_devices": 10}})
    assert type(s.kafka) is KafkaConfig and type(s.worker) is WorkerConfig
    assert type(s.model) is ServingConfig and type(s.swap) is SwapConfig
    assert s.worker.store == StoreConfig(max_gap=7, idle_ttl_s=9.0, max_devices=10)
    assert s.worker.sequencer.late == "drop" and s.swap.prime == "reset"
    t = load_trainer_settings(trainer, env, {"trainer": {"gate.min_holdout_windows": 3}})
    assert type(t.trainer) is TrainerConfig and type(t.trainer.train) is TrainConfig
    assert t.trainer.mode == "scratch" and t.trainer.gate.margin == 0.1
    assert t.trainer.gate.min_holdout_windows == 3
    # unset keys of a nested section keep the component's defaults, not the class's
    assert (t.trainer.train.epochs, t.trainer.train.lanes) == (2, 4)
    assert t.trainer.train.tbptt_steps == TRAINING.tbptt_steps != TrainConfig().tbptt_steps
    assert t.http.port == 9401 and s.http.port == 9400


def test_keys_of_earlier_releases_are_read_with_a_deprecation_message(tmp_path, caplog):
    from pipeline.settings import load_trainer_settings

    worker = tmp_path / "worker.toml"
    worker.write_text('[kafka]\nsasl_username = "u"\n[worker]\nmax_gap = 3\nchannels = 6\n'
                      '[model]\nprime = "reset"\n')  # fmt: skip
    s = load_settings(worker, {"HARSTREAM_WORKER_HOLD_S": "0.5"})
    assert s.kafka.sasl_plain_username == "u" and s.worker.store.max_gap == 3
    assert s.swap.prime == "reset" and s.worker.sequencer.hold_s == 0.5
    said = caplog.text
    assert "kafka.sasl_username is deprecated, use kafka.sasl_plain_username" in said
    assert "HARSTREAM_WORKER_HOLD_S" in said and "worker.channels is no longer a setting" in said
    trainer = tmp_path / "trainer.toml"
    trainer.write_text("[trainer]\nepochs = 3\nmax_train_s = 60\n[buffer]\nwindow = 64\n"
                       "[labels]\nwindow = 64\n[drift]\nthreshold = 5.0\n")  # fmt: skip
    t = load_trainer_settings(trainer, {"HARSTREAM_GATE_MARGIN": "0.2"}).trainer
    assert (t.train.epochs, t.train.max_seconds, t.buffer.window, t.join.window) == (3, 60, 64, 64)
    assert t.page_hinkley.threshold == 5.0 and t.gate.margin == 0.2


def test_a_bad_nested_value_names_its_section(tmp_path):
    from pipeline.settings import load_trainer_settings

    path = tmp_path / "trainer.toml"
    path.write_text("[trainer.train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=r"\[trainer.train\]"):
        load_trainer_settings(path, {})
    path.write_text("[worker.store]\ncolour = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting.*\[worker.store\]"):
        load_settings(path, {})


def test_the_kafka_client_library_is_a_setting(tmp_path):
    assert load_settings(None, {}).kafka.client == "kafka-python"
    env = {"HARSTREAM_KAFKA_CLIENT": "confluent"}
    assert load_settings(None, env).kafka.client == "confluent"
    with pytest.raises(ConfigError, match=r"kafka.client must be one of \['kafka-python', 'c"):
        load_settings(None, {"HARSTREAM_KAFKA_CLIENT": "librdkafka"})
