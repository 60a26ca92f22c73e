"""Worker settings from a TOML file, ``HARSTREAM_*`` environment variables and flags.

Later sources win: defaults < TOML file < environment < command-line flags. Every setting has a
section and a key; its environment variable is ``HARSTREAM_<SECTION>_<KEY>`` in capitals, e.g.
``HARSTREAM_KAFKA_BOOTSTRAP_SERVERS`` or ``HARSTREAM_WORKER_EMIT``. ``harstream run --help``
lists them all, and ``docs/configuration.md`` shows a complete file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pipeline.exceptions import ConfigError
from pipeline.observability.server import HttpConfig
from pipeline.state.checkpoint import CheckpointConfig
from streams.kafka_config import SaslMechanism, SecurityProtocol


@dataclass(frozen=True)
class KafkaSection:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    group_id: str = "harstream-workers"
    partitions: int = 6
    """partitions of the input topic when the worker creates it"""
    connect_timeout_s: float = 120.0
    """how long a starting worker or trainer retries an unreachable cluster before it gives up"""
    session_timeout_ms: int = 10_000
    """how long the group waits for a silent member (a killed worker) before it rebalances"""


@dataclass(frozen=True)
class WorkerSection:
    input_topic: str = "sensor.raw"
    predictions_topic: str = "har.predictions"
    events_topic: str = "har.events"
    dlq_topic: str = "sensor.dlq"
    emit: Literal["every", "every_k", "on_change"] = "every_k"
    every_k: int = 25
    min_dwell: int = 50
    max_records: int = 5000
    channels: int = 6
    max_gap: int = 50
    idle_ttl_s: float = 600.0
    max_devices: int = 1_000_000
    late: Literal["hold", "drop"] = "hold"
    hold_s: float = 2.0


@dataclass(frozen=True)
class ModelSection:
    registry: str | None = None
    name: str = "har"
    ref: str = "champion"
    stream_model: str | None = None
    """a stream (many-to-many) .keras file; overrides the registry"""
    window_model: str | None = None
    """a window (many-to-one) .keras file, run beside the stream model"""
    follow: bool = True
    """serving the registry's champion: swap to each new one while running"""
    control_topic: str = "har.control"
    poll_s: float = 1.0
    prime: Literal["ring", "reset"] = "ring"


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSection = field(default_factory=KafkaSection)
    worker: WorkerSection = field(default_factory=WorkerSection)
    model: ModelSection = field(default_factory=ModelSection)
    http: HttpConfig = field(default_factory=HttpConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


SECTIONS: dict[str, type] = {
    "kafka": KafkaSection,
    "worker": WorkerSection,
    "model": ModelSection,
    "http": HttpConfig,
    "checkpoint": CheckpointConfig,
}


def _coerce(section: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` (a TOML value or an environment string) as the field's type."""
    where = f"{section}.{key}"
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None or (optional and value == ""):
        return None
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {list(choices)}, not {value!r}")
        return value
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if kind in (int, float):
            return kind(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {value!r} is not a {kind.__name__}") from exc


def _settable(cls: type) -> list[dataclasses.Field]:
    """The fields a setting can give (a nested config is a section of its own)."""
    return [f for f in fields(cls) if f.default_factory is dataclasses.MISSING]


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Settings from ``path`` (TOML), then ``environ``, then ``overrides`` (flags; None = unset)."""
    return Settings(**load_sections(SECTIONS, path, environ, overrides))


def load_sections(
    sections: Mapping[str, type],
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each of ``sections`` (name -> frozen config class) built from the same three sources."""
    environ = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {name: {} for name in sections}
    if path is not None:
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for section, values in data.items():
            if section not in sections or not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown section [{section}]")
            raw[section].update(values)
    for section, cls in sections.items():
        for f in _settable(cls):
            env = f"HARSTREAM_{section}_{f.name}".upper()
            if env in environ:
                raw[section][f.name] = environ[env]
    for section, values in (overrides or {}).items():
        raw[section].update({k: v for k, v in values.items() if v is not None})
    built = {}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        known = {f.name for f in _settable(cls)}
        unknown = sorted(set(raw[section]) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown} in [{section}]")
        built[section] = cls(
            **{k: _coerce(section, k, v, hints[k]) for k, v in raw[section].items()}
        )
    return built


def describe(sections: Mapping[str, type] = SECTIONS) -> str:
    """Every setting with its default and environment variable (for ``--help`` and docs)."""
    lines = []
    for section, cls in sections.items():
        lines.append(f"[{section}]")
        for f in _settable(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            env = f"HARSTREAM_{section}_{f.name}".upper()
            lines.append(f"  {f.name} = {default!r}   (${env})")
    return "\n".join(lines)
