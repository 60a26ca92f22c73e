"""Errors raised by ``pipeline``: all derive from :class:`harstream.HarstreamError`.

A bad flag, environment variable or settings value raises :class:`~harstream.ConfigError`,
defined once in ``harstream`` for all three packages and re-exported here (``from
pipeline.exceptions import ConfigError``); it is not a :class:`PipelineError`.
"""

from harstream import ConfigError, HarstreamError

__all__ = ["ConfigError", "PipelineError"]


class PipelineError(HarstreamError):
    """Root of the errors raised by the ``pipeline`` package."""
