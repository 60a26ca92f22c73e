"""Argument checks that run before any work, so that a bad flag costs a moment, not a run.

The path checks raise :class:`~pipeline.exceptions.ConfigError` with a one-line message
(``harstream`` prints it and exits with code 2); the ``type=`` helpers make argparse refuse a
value the same way (exit code 2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.exceptions import ConfigError


def output_file(path: str | os.PathLike[str], flag: str, suffix: str | None = None) -> Path:
    """``path`` as a file to write: not a directory, in a directory that exists or can be made."""
    p = Path(path).expanduser()
    if p.is_dir():
        kind = f"{suffix} file" if suffix else "file"
        raise ConfigError(f"{flag} {path}: is a directory, not a {kind}")
    if suffix is not None and p.suffix != suffix:
        raise ConfigError(f"{flag} {path}: the file name must end in {suffix}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{flag} {path}: not writable")
    _writable(p.parent, flag, path)
    return p


def output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a directory to write files in: an existing one, or one that can be made."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a directory")
    _writable(p, flag, path)
    return p


def _writable(directory: Path, flag: str, given: object) -> None:
    """Files can be written in ``directory``: it, or the nearest of its parents that exists
    (where it would be made), is a writable directory."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {given}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {given}: cannot write in {existing}")


def input_file(path: str | os.PathLike[str], flag: str, suffix: str | None = None) -> Path:
    """``path`` as a file to read: it exists, is readable (and ends in ``suffix``)."""
    p = Path(path).expanduser()
    if suffix is not None and p.suffix != suffix:
        raise ConfigError(f"{flag} {path}: expected a {suffix} file")
    if not p.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{flag} {path}: not readable")
    return p


def registry_root(root: str | os.PathLike[str], flag: str, write: bool = False) -> Path:
    """``root`` as a registry directory: not a file; with ``write``, one that can be written."""
    p = Path(root).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {root}: is a file, not a registry directory")
    if write:
        _writable(p, flag, root)
    return p


def only_with(args: argparse.Namespace, allowed: bool, where: str, **flags: str) -> None:
    """Refuse each flag of ``flags`` (``dest="--flag"``) that was given, unless ``allowed``:
    a flag counts as given when its value is neither None nor False."""
    if allowed:
        return
    for dest, flag in flags.items():
        if getattr(args, dest) is not None and getattr(args, dest) is not False:
            raise ConfigError(f"{flag} applies only {where}")


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1."""
    value = _number(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {text}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=``: a number > 0."""
    value = _number(float, text, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse ``type=``: a number >= 0."""
    value = _number(float, text, "a number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def probability(text: str) -> float:
    """argparse ``type=``: a number in [0, 1]."""
    value = _number(float, text, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
    return value


def tcp_port(text: str) -> int:
    """argparse ``type=``: a TCP port, 0 (any free one) to 65535."""
    value = _number(int, text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port in [0, 65535], not {text}")
    return value


def int_list(text: str) -> list[int]:
    """argparse ``type=``: comma-separated integers, e.g. ``2,4,9``."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, not {text!r}"
        ) from None


def positive_int_list(text: str) -> list[int]:
    """argparse ``type=``: comma-separated integers >= 1, e.g. ``1,100,1000``."""
    values = int_list(text)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"every number must be >= 1, not {text!r}")
    return values


def non_negative_int_list(text: str) -> list[int]:
    """argparse ``type=``: comma-separated integers >= 0, e.g. ``0,500,1000``."""
    values = int_list(text)
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"every number must be >= 0, not {text!r}")
    return values


def choice_list(choices: tuple[str, ...]):
    """argparse ``type=`` factory: comma-separated items, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        items = text.split(",")
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"{', '.join(map(repr, unknown))}: expected some of {', '.join(choices)}"
            )
        return items

    return parse


def bootstrap_servers(text: str) -> str:
    """argparse ``type=``: ``HOST:PORT[,HOST:PORT...]``."""
    for server in text.split(","):
        host, _, number = server.rpartition(":")
        if not host or not number.isdigit() or not 0 < int(number) <= 65535:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT[,HOST:PORT...], not {text!r}")
    return text


def _number(kind: type, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
