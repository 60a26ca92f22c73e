"""Where the services' log records go: one handler on the root logger, writing to stderr.

Services log through ``logging.getLogger(__name__)`` and pass structured fields with ``extra=``::

    logger.info("partitions assigned", extra={"partitions": [0, 2], "devices": 310})

``text`` (for a terminal) renders that record as
``12:01:02 INFO  pipeline.worker.loop: partitions assigned partitions=[0, 2] devices=310``;
``json`` (for log collectors) as one object per line with ``time`` (ISO-8601, UTC), ``level``,
``logger``, ``message``, every field given with ``extra=``, and ``exc`` (a traceback) if any.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime

from pipeline import startup_noise
from pipeline.exceptions import ConfigError

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
NOISY = ("kafka", "librdkafka")
"""third-party loggers quieted to WARNING unless the level is debug (kafka-python's INFO is
every connection and metadata refresh; ``librdkafka``: confluent-kafka's client library)"""
_STANDARD = {*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"}


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields of ``record``: the attributes ``extra=`` added to it."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def brief(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` of a third-party client (:data:`NOISY`) with its exception as one line, not a
    traceback: kafka-python logs every lost connection with one, and a broker restart is no
    crash of ours. Other records are returned as they are."""
    if not record.exc_info or record.name.split(".")[0] not in NOISY:
        return record
    kind, error = record.exc_info[0], record.exc_info[1]
    short = logging.makeLogRecord(vars(record))
    short.msg, short.args = f"{record.getMessage()} ({kind.__name__}: {error})", None
    short.exc_info = short.exc_text = None
    return short


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, readable on a terminal."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        self.tracebacks = tracebacks
        """third-party clients' tracebacks too (``debug``), else :func:`brief`"""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record if self.tracebacks else brief(record))

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's API)
        pairs = (f" {k}={_text(v)}" for k, v in fields(record).items())
        return super().formatMessage(record) + "".join(pairs)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (values JSON cannot hold are written as strings)."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks
        """third-party clients' tracebacks too (``debug``), else :func:`brief`"""

    def format(self, record: logging.LogRecord) -> str:
        record = record if self.tracebacks else brief(record)
        created = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (rich's live views redirect it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_handler: logging.Handler | None = None


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every log record at ``level`` or above to stderr, as ``fmt`` (``text``/``json``).

    Calling it again replaces the handler. ``debug`` also shows kafka-python's chatter and
    TensorFlow's C++ start-up lines (configure before TensorFlow is imported).
    """
    global _handler
    if level not in LEVELS or fmt not in FORMATS:
        raise ConfigError(f"log level must be one of {', '.join(LEVELS)} and format one of "
                          f"{', '.join(FORMATS)}, not {level!r} and {fmt!r} (--log-level, "
                          "HARSTREAM_LOG_LEVEL, --log-format, HARSTREAM_LOG_FORMAT)")  # fmt: skip
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _Stderr()
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    _handler.setFormatter(formatter(tracebacks=level == "debug"))
    root.addHandler(_handler)
    root.setLevel(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn as records too, so JSON lines stay JSON
    startup_noise.install(level != "debug")


def add_flags(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """``--log-level`` and ``--log-format``, defaulting to ``HARSTREAM_LOG_LEVEL`` and
    ``HARSTREAM_LOG_FORMAT``; ``suppress``: no default (a subcommand's copy, which then only
    overrides the top-level one when given)."""
    level = argparse.SUPPRESS if suppress else default_level()
    fmt = argparse.SUPPRESS if suppress else default_format()
    parser.add_argument("--log-level", choices=LEVELS, default=level, type=str.lower,
                        help="least severe log records shown (env HARSTREAM_LOG_LEVEL; "
                        "default info)")  # fmt: skip
    parser.add_argument("--log-format", choices=FORMATS, default=fmt, type=str.lower,
                        help="log lines as text or JSON objects (env HARSTREAM_LOG_FORMAT; "
                        "default text)")  # fmt: skip


def default_level() -> str:
    """``HARSTREAM_LOG_LEVEL`` (lower case), else ``info``."""
    return os.environ.get("HARSTREAM_LOG_LEVEL", "info").strip().lower() or "info"


def default_format() -> str:
    """``HARSTREAM_LOG_FORMAT`` (lower case), else ``text``."""
    return os.environ.get("HARSTREAM_LOG_FORMAT", "text").strip().lower() or "text"


def _text(value: object) -> str:
    """A field's value for a text line: quoted when it would not read as one word."""
    text = str(value)
    return json.dumps(text) if isinstance(value, str) and (not text or " " in text) else text
