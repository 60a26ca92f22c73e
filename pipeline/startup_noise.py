"""TensorFlow's C++ start-up lines, kept off stderr unless asked for.

``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's own C++ logging, but not the lines its bundled
Abseil writes while the libraries load ("WARNING: All log messages before absl::InitializeLog()
...", "oneDNN custom operations are on ..."): no environment variable reaches that logger. So
the first ``import tensorflow`` runs with file descriptor 2 captured, and everything it wrote
except Abseil's INFO and WARNING lines is written back afterwards. Numerics are untouched
(oneDNN stays on).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from contextlib import contextmanager

_CHATTER = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|[IW]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w.-]+:\d+\] "
)
"""Abseil's pre-initialisation notice and its INFO/WARNING lines (errors are kept)"""


def install(quiet: bool = True) -> None:
    """Quiet (or, ``quiet=False``, show) TensorFlow's start-up lines; effective only before
    TensorFlow is imported. ``import pipeline`` quiets them; the CLI's ``--log-level debug``
    shows them."""
    _uninstall()
    if "tensorflow" in sys.modules:
        return
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.meta_path.insert(0, _QuietImport())
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the path finder does; its loader runs under :func:`_filtered`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of ``tensorflow`` with stderr filtered, once."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the real one, from now on
        _uninstall()
        with _filtered():
            self.loader.exec_module(module)


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietImport)]


@contextmanager
def _filtered():
    """Capture file descriptor 2; write back all but Abseil's chatter when done."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr to capture
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if not _CHATTER.match(line))
            with open(2, "wb", closefd=False) as stderr:
                stderr.write(kept)
