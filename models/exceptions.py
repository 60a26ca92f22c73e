"""Errors raised by ``models``: all derive from :class:`harstream.HarstreamError`."""

from harstream import HarstreamError


class ModelsError(HarstreamError):
    """Root of the errors raised by the ``models`` package."""
