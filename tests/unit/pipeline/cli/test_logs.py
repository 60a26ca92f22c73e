"""``pipeline.cli.logs``: the text and JSON-lines handlers, levels, and the global flags."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

from pipeline.cli import logs
from pipeline.cli.main import build_parser
from pipeline.exceptions import ConfigError

log = logging.getLogger("pipeline.test")


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """Each test configures logging afresh; put back what was there before."""
    root, kafka = logging.getLogger(), logging.getLogger("kafka")
    handlers, level, kafka_level = list(root.handlers), root.level, kafka.level
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for name in ("HARSTREAM_LOG_LEVEL", "HARSTREAM_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    root.handlers[:] = []  # a handler an earlier test's main() left would write lines twice
    monkeypatch.setattr(logs, "_handler", None)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    kafka.setLevel(kafka_level)
    logging.captureWarnings(False)


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_the_extra_fields_and_the_exception(capsys):
    logs.configure("info", "json")
    log.info("partitions assigned", extra={"partitions": [0, 2], "devices": 310})
    try:
        raise ValueError("bad model")
    except ValueError:
        log.exception("hot swap failed", extra={"version": "har@v0002"})
    first, second = (json.loads(line) for line in lines(capsys))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("time"))
    assert first == {"level": "INFO", "logger": "pipeline.test", "message": "partitions assigned",
                     "partitions": [0, 2], "devices": 310}  # fmt: skip
    assert second["level"] == "ERROR" and second["version"] == "har@v0002"
    assert "ValueError: bad model" in second["exc"]


def test_values_json_cannot_hold_are_written_as_strings(capsys):
    logs.configure("info", "json")
    log.info("with %s", "args", extra={"path": Path("/tmp/buffer.npz")})
    record = json.loads(lines(capsys)[0])
    assert (record["message"], record["path"]) == ("with args", "/tmp/buffer.npz")


def test_text_lines_are_readable(capsys):
    logs.configure("info", "text")
    log.info("worker started", extra={"group": "harstream", "where": "a b", "devices": 3})
    (line,) = lines(capsys)
    expected = (
        r'\d\d:\d\d:\d\d INFO  pipeline.test: worker started group=harstream where="a b" devices=3'
    )
    assert re.fullmatch(expected, line)


def test_records_below_the_level_are_dropped(capsys):
    logs.configure("warning", "text")
    log.info("hidden")
    log.warning("shown")
    assert [line.split(": ", 1)[1] for line in lines(capsys)] == ["shown"]


def test_kafka_clients_chatter_only_at_debug(capsys):
    logs.configure("info", "text")
    logging.getLogger("kafka.conn").info("connecting")
    assert lines(capsys) == []
    logs.configure("debug", "text")
    logging.getLogger("kafka.conn").info("connecting")
    log.debug("details")
    assert len(lines(capsys)) == 2


def test_configuring_again_replaces_the_handler(capsys):
    logs.configure("info", "text")
    logs.configure("info", "json")
    log.info("once")
    (line,) = lines(capsys)
    assert json.loads(line)["message"] == "once"


def test_unknown_level_or_format_is_a_config_error():
    with pytest.raises(ConfigError, match="log level"):
        logs.configure("verbose", "text")
    with pytest.raises(ConfigError, match="format"):
        logs.configure("info", "xml")


def test_flags_before_or_after_the_command():
    parse = build_parser().parse_args
    assert (parse(["run"]).log_level, parse(["run"]).log_format) == ("info", "text")
    for argv in (["--log-format", "json", "run"], ["run", "--log-format", "json"]):
        assert parse(argv).log_format == "json"
    args = parse(["--log-level", "error", "run", "--log-level", "DEBUG"])
    assert args.log_level == "debug"


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HARSTREAM_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("HARSTREAM_LOG_FORMAT", "json")
    args = build_parser().parse_args(["run"])
    assert (args.log_level, args.log_format) == ("warning", "json")
    assert build_parser().parse_args(["run", "--log-level", "info"]).log_level == "info"


def test_a_client_librarys_exception_is_one_line_unless_debug(capsys):
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        for level in ("info", "debug"):
            logs.configure(level, "text")
            logging.getLogger("kafka.net.transport").exception("socket lost")
            logging.getLogger("pipeline.worker.loop").exception("ours")
            err = capsys.readouterr().err
            theirs, ours = err[: err.index("ours")], err[err.index("ours") :]
            assert "Traceback" in ours  # our own errors keep their traceback
            assert ("Traceback" in theirs) == (level == "debug")
            if level == "info":
                assert "socket lost (ConnectionResetError: [Errno 104] Connection reset" in theirs
