"""Shared root of harstream's three packages: the version and the one exception root.

``streams``, ``models`` and ``pipeline`` each keep an ``exceptions.py`` whose classes derive
from :class:`HarstreamError`, so ``except HarstreamError`` catches every error the project raises
on purpose (the ``harstream`` command prints it as ``harstream: error: ...`` and exits with 2).
:class:`ConfigError`, shared by the three packages, lives here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harstream")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


class HarstreamError(Exception):
    """Root of every exception harstream raises on purpose."""


class ConfigError(HarstreamError, ValueError):
    """A configuration value is invalid: a command-line flag, an environment variable, a
    settings-file entry or a field of a config object.

    The one configuration error of all three packages (``streams.exceptions`` and
    ``pipeline.exceptions`` re-export it); a model's architecture or training options raise its
    subclass :class:`models.exceptions.SpecError`. Also a ``ValueError``, as any bad value is.
    """


__all__ = ["ConfigError", "HarstreamError", "__version__"]
