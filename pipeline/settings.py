"""Settings from a TOML file, ``HARSTREAM_*`` environment variables and flags.

Each TOML section is read straight into a component's frozen config: ``[kafka]`` is a
:class:`~streams.kafka_config.KafkaConfig`, ``[worker]`` a :class:`~pipeline.worker.WorkerConfig`,
and a config nested in another is a section of its own (``[worker.store]``,
``[trainer.train]``). Later sources win: defaults < TOML file < environment < command-line
flags. A setting's environment variable is ``HARSTREAM_`` and its dotted path in capitals with
``_`` for the dots, e.g. ``HARSTREAM_KAFKA_BOOTSTRAP_SERVERS`` or
``HARSTREAM_WORKER_STORE_MAX_GAP``. Keys of earlier releases are accepted as aliases
(:data:`ALIASES`) with a deprecation message. ``harstream run --help`` lists every setting, and
``docs/configuration.md`` shows complete files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from harstream import HarstreamError
from pipeline.exceptions import ConfigError
from pipeline.observability.server import HttpConfig
from pipeline.serving import ServingConfig
from pipeline.state.checkpoint import CheckpointConfig
from pipeline.swap.watcher import SwapConfig
from pipeline.trainer.service import TrainerConfig
from pipeline.worker import WorkerConfig
from streams.kafka_config import KafkaConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """A worker's settings: one component config per section."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    model: ServingConfig = field(default_factory=ServingConfig)
    swap: SwapConfig = field(default_factory=SwapConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


@dataclass(frozen=True)
class TrainerSettings:
    """The trainer service's settings (its status server on port 9401 by default)."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    http: HttpConfig = field(default_factory=lambda: HttpConfig(port=9401))


def _sections(cls: type) -> dict[str, Any]:
    return {f.name: f.default_factory() for f in fields(cls)}


SECTIONS: dict[str, Any] = _sections(Settings)
"""The worker's sections: name -> default config."""
TRAINER_SECTIONS: dict[str, Any] = _sections(TrainerSettings)
"""The trainer's sections: name -> default config."""

ALIASES: dict[str, str | None] = {
    "kafka.sasl_username": "kafka.sasl_plain_username",
    "kafka.sasl_password": "kafka.sasl_plain_password",
    "worker.max_gap": "worker.store.max_gap",
    "worker.idle_ttl_s": "worker.store.idle_ttl_s",
    "worker.max_devices": "worker.store.max_devices",
    "worker.late": "worker.sequencer.late",
    "worker.hold_s": "worker.sequencer.hold_s",
    "worker.channels": None,  # the served model says how many channels a record has
    "model.poll_s": "swap.poll_s",
    "model.prime": "swap.prime",
    "buffer": "trainer.buffer",
    "labels": "trainer.join",
    "gate": "trainer.gate",
    "drift": "trainer.page_hinkley",
    **{
        f"trainer.{key}": f"trainer.train.{key}"
        for key in (
            "epochs",
            "learning_rate",
            "batch_size",
            "clipnorm",
            "tune",
            "l2_sp",
            "tbptt_steps",
            "lanes",
            "seed",
        )  # fmt: skip
    },
    "trainer.max_train_s": "trainer.train.max_seconds",
}
"""Keys (or whole sections) of earlier releases -> where they live now (None: ignored)."""


def env_name(path: str) -> str:
    """The environment variable of a dotted setting path (``worker.store.max_gap`` ->
    ``HARSTREAM_WORKER_STORE_MAX_GAP``)."""
    return "HARSTREAM_" + path.replace(".", "_").upper()


def _nested(f: dataclasses.Field) -> Any:
    """The default of a nested config (a section of its own), else None. A field marked
    ``metadata={"setting": False}`` is no setting at all."""
    if f.default_factory is dataclasses.MISSING:
        return None
    default = f.default_factory()
    return default if dataclasses.is_dataclass(default) else None


def _settable(cls: type) -> Iterator[dataclasses.Field]:
    return (f for f in fields(cls) if f.metadata.get("setting", True))


def leaves(sections: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """Every setting as (dotted path, default, type hint), each section before its
    subsections; ``sections`` maps names to config classes or default instances."""
    for name, config in sections.items():
        hints = typing.get_type_hints(type(config) if not isinstance(config, type) else config)
        defaults = config() if isinstance(config, type) else config
        nested = {}
        for f in _settable(type(defaults)):
            if (inner := _nested(f)) is not None:
                nested[f"{name}.{f.name}"] = getattr(defaults, f.name, inner)
            else:
                yield f"{name}.{f.name}", getattr(defaults, f.name), hints[f.name]
        yield from leaves(nested)


def subsections(sections: Mapping[str, Any]) -> set[str]:
    """Every section's dotted name, nested ones included."""
    out = set()
    for name, config in sections.items():
        out.add(name)
        cls = config if isinstance(config, type) else type(config)
        out |= subsections({f"{name}.{f.name}": _nested(f) for f in _settable(cls)
                            if _nested(f) is not None})  # fmt: skip
    return out


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """``value`` (a TOML value or an environment string) as the field's type."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None or (optional and value == ""):
        return None
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(f"{path} must be one of {list(choices)}, not {value!r}")
        return value
    try:
        if kind is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if kind in (int, float):
            return kind(value)
        if typing.get_origin(kind) is tuple:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(v).strip() for v in items if str(v).strip())
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {value!r} is not a {kind.__name__}") from exc


def _resolve(path: str, where: str) -> str | None:
    """``path`` with an alias (of the key or of its section) replaced, with a warning."""
    for old, new in ALIASES.items():
        if path == old or path.startswith(old + "."):
            if new is None:
                log.warning("%s: %s is no longer a setting and is ignored", where, old)
                return None
            now = new + path[len(old) :]
            log.warning("%s: %s is deprecated, use %s", where, path, now)
            return now
    return path


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def load_sections(
    sections: Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each of ``sections`` (name -> config class or default) from ``path`` (TOML), then
    ``environ``, then ``overrides`` (flags: section -> key -> value, None = unset)."""
    environ = os.environ if environ is None else environ
    known = {p: hint for p, _, hint in leaves(sections)}
    tables = subsections(sections)
    raw: dict[str, Any] = {}

    def put(where: str, key: str, value: Any) -> None:
        target = _resolve(key, where)
        if target is None:
            return
        if target not in known:
            section, _, name = target.rpartition(".")
            if section not in tables:
                raise ConfigError(f"{where}: unknown section [{section or name}]")
            raise ConfigError(f"{where}: unknown setting(s) [{name!r}] in [{section}]")
        raw[target] = value

    if path is not None:
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such config file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: unknown section [{section}] (a key outside a section)")
        for key, value in _flatten(data):
            put(str(path), key, value)
    for old in _old_paths(known):
        if env_name(old) in environ:
            put(env_name(old), old, environ[env_name(old)])
    for p in known:
        if env_name(p) in environ:
            raw[p] = environ[env_name(p)]
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                put("command line", f"{section}.{key}", value)
    return {name: _build(name, cls, raw) for name, cls in sections.items()}


def _old_paths(known: Mapping[str, Any]) -> list[str]:
    """The paths of earlier releases that still mean one of the ``known`` settings."""
    out = []
    for old, new in ALIASES.items():
        if new is None:
            section = old.rpartition(".")[0] + "."
            out += [old] if any(p.startswith(section) for p in known) else []
        elif new in known:
            out.append(old)
        else:
            out += [old + p[len(new) :] for p in known if p.startswith(new + ".")]
    return out


def _build(name: str, config: Any, raw: Mapping[str, Any]) -> Any:
    """``config`` (a class, or a default instance) with the settings given under ``name``."""
    defaults = config() if isinstance(config, type) else config
    hints = typing.get_type_hints(type(defaults))
    changes = {}
    for f in _settable(type(defaults)):
        p = f"{name}.{f.name}"
        if _nested(f) is not None:
            changes[f.name] = _build(p, getattr(defaults, f.name), raw)
        elif p in raw:
            changes[f.name] = _coerce(p, raw[p], hints[f.name])
    try:
        return dataclasses.replace(defaults, **changes)
    except (HarstreamError, TypeError, ValueError) as exc:  # the component's own checks
        raise ConfigError(f"[{name}] {exc}") from exc


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """A worker's settings from ``path`` (TOML), then ``environ``, then ``overrides``."""
    return Settings(**load_sections(SECTIONS, path, environ, overrides))


def load_trainer_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> TrainerSettings:
    """The trainer's settings from the same three sources."""
    return TrainerSettings(**load_sections(TRAINER_SECTIONS, path, environ, overrides))


def variables(sections: Mapping[str, Any] = SECTIONS) -> set[str]:
    """Every environment variable the sections read, those of earlier releases included."""
    known = {p: None for p, _, _ in leaves(sections)}
    return {env_name(p) for p in [*known, *_old_paths(known)]}


def describe(sections: Mapping[str, Any] = SECTIONS) -> str:
    """Every setting with its default and environment variable (for ``--help`` and docs)."""
    lines, current = [], None
    for p, default, _ in leaves(sections):
        section, _, key = p.rpartition(".")
        if section != current:
            lines.append(f"[{section}]")
            current = section
        lines.append(f"  {key} = {default!r}   (${env_name(p)})")
    known = {p: None for p, _, _ in leaves(sections)}
    read = set(_old_paths(known))
    old = [f"{a} -> {n or '(ignored)'}" for a, n in ALIASES.items()
           if a in read or any(r.startswith(a + ".") for r in read)]  # fmt: skip
    if old:
        lines.append("deprecated keys still read: " + ", ".join(old))
    return "\n".join(lines)
