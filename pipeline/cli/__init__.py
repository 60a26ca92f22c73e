"""The ``harstream`` command: the entry point (``main``), one module per command
(``commands``), argument helpers and console progress."""

from pipeline.cli.main import main

__all__ = ["main"]
