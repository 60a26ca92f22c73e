"""The ``harstream`` command."""

from __future__ import annotations

import argparse
import sys

from harstream import HarstreamError, __version__
from pipeline.cli.commands import bench, demo, evaluate, registry, replay, run, train, trainer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harstream",
        description="Streaming human-activity recognition over Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"harstream {__version__}")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in (demo, run, replay, train, evaluate, registry, trainer, bench):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HarstreamError as err:
        print(f"harstream: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
