"""Flags that set settings (``dest="section.key"``), and running a service until it is stopped."""

from __future__ import annotations

import argparse
import signal
import time
import typing
from typing import Protocol

from streams.kafka_config import KafkaClient


def add_http_flags(p: argparse.ArgumentParser) -> None:
    """``--http-host`` and ``--http-port``: where metrics, probes and the dashboard are served."""
    p.add_argument("--http-host", dest="http.host",
                   help="address of /metrics, /healthz, /readyz (default 127.0.0.1)")  # fmt: skip
    p.add_argument("--http-port", dest="http.port", type=int, help="their port (0: a free one)")


def add_service_flags(p: argparse.ArgumentParser) -> None:
    """What the worker and the trainer share: ``--config``, ``--bootstrap``, ``--kafka-client``."""
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--bootstrap", dest="kafka.bootstrap_servers", help="Kafka host:port[,...]")
    add_kafka_client_flag(p)


def add_kafka_client_flag(p: argparse.ArgumentParser) -> None:
    """``--kafka-client``: the Kafka client library (``[kafka] client``)."""
    p.add_argument(
        "--kafka-client",
        dest="kafka.client",
        choices=typing.get_args(KafkaClient),
        help="Kafka client library (confluent: pip install 'harstream[fast]')",
    )


def overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The ``section.key`` flags that were given, as settings overrides."""
    out: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out


class Loop(Protocol):
    """A worker or a trainer, as a command runs it."""

    stopping: bool

    def run(self, count: int | None = None, timeout: float | None = None): ...

    def stop(self) -> None: ...


def run_until_stopped(loop: Loop, max_seconds: float | None) -> None:
    """``loop.run`` until SIGTERM or SIGINT stops it, or for ``max_seconds``."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.stop())
    deadline = time.monotonic() + max_seconds if max_seconds else None
    while not loop.stopping and (deadline is None or time.monotonic() < deadline):
        loop.run(timeout=min(5.0, deadline - time.monotonic()) if deadline else 5.0)
