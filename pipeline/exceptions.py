"""Errors raised by ``pipeline``: all derive from :class:`harstream.HarstreamError`."""

from harstream import HarstreamError


class PipelineError(HarstreamError):
    """Root of the errors raised by the ``pipeline`` package."""


class ConfigError(PipelineError):
    """A command-line flag, environment variable or config file value is invalid."""
