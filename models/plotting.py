"""One way to make a PNG figure: headless (Agg), laid out, saved, closed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def png_axes(
    path: str | os.PathLike[str], figsize: tuple[float, float], rows: int = 1
) -> Iterator[object]:
    """Yield matplotlib axes (an array of ``rows`` of them, sharing x, if ``rows > 1``); on exit
    the figure is saved to ``path`` and closed."""
    import matplotlib  # matplotlib: only when plotting, never at start-up

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), so no display is needed

    fig, ax = plt.subplots(rows, figsize=figsize, dpi=110, sharex=True)
    try:
        yield ax
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
