"""``harstream registry``: add, list, inspect, promote and roll back registered model versions."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from models.exceptions import ModelsError
from models.registry import ModelVersion, Registry, check_name, version_label
from pipeline.cli.checks import bootstrap_servers, input_file, only_with, registry_root
from pipeline.cli.kafka_args import (
    add_kafka_arguments,
    check_kafka_arguments,
    kafka_config_from_args,
)
from pipeline.swap.control import announce
from streams import clients

ROOT_ENV = "HARSTREAM_REGISTRY"
KEY_METRICS = ("accuracy", "macro_f1")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "registry",
        help="add, list, show, promote and roll back model versions",
        description=__doc__,
    )
    _add_root(p, default=None)
    which = p.add_subparsers(title="actions", required=True, metavar="ACTION")

    ls = which.add_parser("list", help="the versions of every model, or of NAME")
    ls.add_argument("name", nargs="?", metavar="NAME")
    ls.add_argument("--json", action="store_true", help="one JSON object per version")
    ls.set_defaults(run=run_list)

    show = which.add_parser("show", help="metadata, metrics and lineage of one version")
    show.add_argument("name", metavar="NAME")
    show.add_argument(
        "ref",
        nargs="?",
        metavar="REF",
        help="version (3 or v0003), 'latest' or an alias (default: champion, else latest)",
    )
    show.add_argument("--json", action="store_true", help="print it as one JSON object")
    show.set_defaults(run=run_show)

    promote = which.add_parser("promote", help="make a version the champion")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", metavar="VERSION", help="3, v0003 or 'latest'")
    promote.set_defaults(run=run_promote)

    rollback = which.add_parser("rollback", help="swap champion and previous")
    rollback.add_argument("name", metavar="NAME")
    rollback.set_defaults(run=run_rollback)

    add = which.add_parser(
        "add", help="register a .keras model file (metadata inside) as NAME's next version"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("file", metavar="FILE.keras")
    add.add_argument("--promote", action="store_true", help="also make it the champion")
    add.add_argument("--if-empty", action="store_true",
                     help="do nothing when NAME already has a version (a seeding step that can "
                     "run at every start)")  # fmt: skip
    add.add_argument("--notes", default=None, help="lineage notes (default: where it came from)")
    add.set_defaults(run=run_add)

    for action in (ls, show, promote, rollback, add):  # --root also after the action
        _add_root(action, default=argparse.SUPPRESS)
    for action in (promote, rollback):
        action.add_argument("--announce", metavar="BOOTSTRAP", type=bootstrap_servers,
                            help="also announce the new champion on the control topic of this "
                            "Kafka cluster (running workers swap at once)")  # fmt: skip
        action.add_argument("--control-topic", help="(default har.control)")
        add_kafka_arguments(action)


def _add_root(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--root",
        default=default,
        metavar="DIR",
        help=f"registry directory (default: ${ROOT_ENV}, else ./registry)",
    )


def registry_from_args(args: argparse.Namespace, write: bool = False) -> Registry:
    """The registry at --root (checked to be a directory, or one that can be made)."""
    root = args.root or os.environ.get(ROOT_ENV) or "registry"
    return Registry(registry_root(root, "--root", write=write))


def run_list(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    names = [args.name] if args.name else registry.names()
    rows = [_row(v) for name in names for v in registry.versions(name)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no models registered under {registry.root}", file=sys.stderr)
        return 0
    table = Table(title=f"Model registry {registry.root}")
    for key in rows[0]:
        right = key in ("version", "parent", *KEY_METRICS)
        table.add_column(key.replace("_", " "), justify="right" if right else "left")
    for row in rows:
        table.add_row(*(_cell(key, value) for key, value in row.items()))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # logs and CI: do not squeeze columns to 80
    console.print(table)
    return 0


def _row(v: ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "status": v.status,
        "created": v.lineage.get("created_at", ""),
        **{key: v.metrics.get(key) for key in KEY_METRICS},
        "spec": v.meta.spec.name,
        "parent": v.lineage.get("parent"),
        "training_data": v.lineage.get("training_data", ""),
    }


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("version", "parent"):
        return version_label(value)
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def run_show(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    ref = args.ref or ("champion" if "champion" in registry.aliases(args.name) else "latest")
    v = registry.get(args.name, ref)
    if args.json:
        print(json.dumps(v.to_dict(), indent=2))
        return 0
    for title, fields in _sections(v).items():
        print(title)
        shown = {k: val for k, val in fields.items() if val not in (None, "", {})}
        width = max((len(k) for k in shown), default=0)
        for key, value in shown.items():
            print(f"  {key:<{width}}  {_text(value)}")
        if not shown:
            print("  (none)")
    return 0


def _sections(v: ModelVersion) -> dict[str, dict[str, Any]]:
    """What ``show`` prints: titled groups of fields (empty fields are left out)."""
    lineage, meta = v.lineage, v.meta
    parent = lineage.get("parent")
    code = lineage.get("code", {})
    commit = code.get("git_commit")
    return {
        f"{v.name} {v.label}": {
            "status": v.status,
            "aliases": ", ".join(v.aliases),
            "path": v.path,
            "created": lineage.get("created_at"),
            "parent": version_label(parent) if parent is not None else None,
            "training data": lineage.get("training_data"),
            "notes": lineage.get("notes"),
            "source": lineage.get("source"),
            "code": f"harstream {code.get('harstream')}" + (f", commit {commit}" if commit else ""),
            "rejected": v.rejected
            and f"{v.rejected.get('reason')} ({v.rejected.get('rejected_at')})",
        },
        "model": {
            "spec": meta.spec.name,
            "channels": ", ".join(meta.channels),
            "classes": ", ".join(meta.classes),
            "rate": f"{meta.rate_hz:g} Hz",
            "window": f"{meta.window} samples, stride {meta.stride}",
        },
        "provenance": meta.provenance,
        "metrics": v.metrics,
    }


def run_promote(args: argparse.Namespace) -> int:
    _check_announce(args)
    registry = registry_from_args(args, write=True)
    v = registry.promote(args.name, args.version)
    print(f"{v.name}: champion is now {v.label}{_previous(registry, v.name)}")
    _announce(args, v, "promote")
    return 0


def run_add(args: argparse.Namespace) -> int:
    check_name(args.name)
    registry = registry_from_args(args, write=True)
    if args.if_empty and args.name in registry.names():
        print(f"{args.name}: already registered, {args.file} not added")
        return 0
    input_file(args.file, "FILE", suffix=".keras")
    _check_loads(args.file)
    notes = args.notes if args.notes is not None else f"added from {args.file}"
    v = registry.register(args.name, args.file, notes=notes)
    print(f"{v.name}: registered {v.label} from {args.file}")
    if args.promote:
        v = registry.promote(v.name, v.version)
        print(f"{v.name}: champion is now {v.label}{_previous(registry, v.name)}")
    return 0


def _check_loads(path: str) -> None:
    """Refuse a file Keras would not load with ``safe_mode=True`` (or not a harstream model)."""
    from models.io import load_model  # imports Keras: only paid by those who add

    try:
        load_model(path)
    except ModelsError:
        raise
    except Exception as exc:  # Keras raises ValueError, TypeError, ... for unloadable files
        raise ModelsError(f"{path}: not loadable with safe_mode=True ({exc})") from exc


def run_rollback(args: argparse.Namespace) -> int:
    _check_announce(args)
    registry = registry_from_args(args, write=True)
    v = registry.rollback(args.name)
    print(f"{v.name}: rolled back; champion is now {v.label}{_previous(registry, v.name)}")
    _announce(args, v, "rollback")
    return 0


def _check_announce(args: argparse.Namespace) -> None:
    """The announcement's flags, before the registry changes."""
    only_with(args, bool(args.announce), "with --announce", control_topic="--control-topic")
    check_kafka_arguments(args, bool(args.announce), "with --announce")


def _announce(args: argparse.Namespace, v: ModelVersion, action) -> None:
    """Tell running workers on Kafka (they would otherwise notice at their next registry poll)."""
    if not args.announce:
        return
    topic = args.control_topic or "har.control"
    sink = clients.sink(kafka_config_from_args(args, args.announce))
    try:
        announce(sink, v.name, v.version, action, topic=topic)
    finally:
        sink.close()
    print(f"announced on {topic} at {args.announce}")


def _previous(registry: Registry, name: str) -> str:
    previous = registry.aliases(name).get("previous")
    return f", previous {version_label(previous)}" if previous is not None else ""
