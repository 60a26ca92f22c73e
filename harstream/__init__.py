"""Shared root of harstream's three packages: the version and the one exception root.

``streams``, ``models`` and ``pipeline`` each keep an ``exceptions.py`` whose classes derive
from :class:`HarstreamError`, so ``except HarstreamError`` catches every error the project raises
on purpose.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harstream")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


class HarstreamError(Exception):
    """Root of every exception harstream raises on purpose."""


__all__ = ["HarstreamError", "__version__"]
