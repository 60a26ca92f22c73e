"""The ``harstream`` command."""

from __future__ import annotations

import argparse
import logging
import sys

from harstream import HarstreamError, __version__
from pipeline.cli import logs
from pipeline.cli.commands import bench, demo, evaluate, registry, replay, run, train, trainer


class _Parser(argparse.ArgumentParser):
    """A parser whose ``description`` may be a callable, called only when help is printed (the
    settings' descriptions need the components' config classes, which --help alone does not)."""

    def format_help(self) -> str:
        if callable(self.description):
            self.description = self.description()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harstream",
        description="Streaming human-activity recognition over Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"harstream {__version__}")
    logs.add_flags(parser)
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in (demo, run, replay, train, evaluate, registry, trainer, bench):
        command.add_parser(sub)
    for command_parser in sub.choices.values():  # also after the command: run --log-level ...
        logs.add_flags(command_parser, suppress=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.configure(args.log_level, args.log_format)
        return args.run(args)
    except HarstreamError as err:
        if args.log_format == "json":  # one JSON object per line, errors too
            logging.getLogger("pipeline.cli").error(str(err), extra={"error": type(err).__name__})
        else:
            print(f"harstream: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
