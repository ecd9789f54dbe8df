"""Training-stability figure: one panel per metric (eval metrics, Q statistics) over steps.

Drawn with matplotlib's object API (``Figure`` + the Agg canvas), so nothing touches pyplot's
global state or needs a display; safe in Ray workers and tests.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from recrl.pipelines.atomic_output import atomic_write

logger = logging.getLogger(__name__)

MAX_COLUMNS = 3
PANEL_SIZE_IN = (4.0, 3.0)
DPI = 100


@dataclass(frozen=True)
class StabilityPlot:
    """What ``plot_stability`` wrote."""

    path: Path
    """The PNG file."""
    panels: tuple[str, ...]
    """Metric names that got a panel, in drawing order (history order, empty ones skipped)."""


def plot_stability(
    history: Mapping[str, Sequence[tuple[int, float]]],
    path: str | os.PathLike,
    *,
    title: str,
) -> StabilityPlot:
    """Draw ``history`` (metric name -> ``[(step, value), ...]``) as a grid of line plots,
    up to three panels a row, each against the training step, and save it as a PNG.

    Points are sorted by step; non-finite values leave a gap. Metrics without points are
    skipped; if none has a point, ``ValueError``. The parent folder is created.
    """
    series = {
        name: sorted(points, key=lambda p: p[0])
        for name, points in history.items()
        if len(points) > 0
    }
    if not series:
        raise ValueError(
            f"nothing to plot for {title!r}: the history has no metric with points "
            f"({len(history)} metric names given)"
        )
    n = len(series)
    cols = min(MAX_COLUMNS, n)
    rows = math.ceil(n / cols)
    figure = Figure(figsize=(PANEL_SIZE_IN[0] * cols, PANEL_SIZE_IN[1] * rows), dpi=DPI)
    FigureCanvasAgg(figure)  # attaches itself to the figure
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, points) in zip(axes, series.items(), strict=False):
        steps = [step for step, _ in points]
        values = [float(value) for _, value in points]
        ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png"))  # never half a PNG
    skipped = len(history) - n
    logger.info("wrote %s: %d panels (%d empty metrics skipped)", out, n, skipped)
    return StabilityPlot(path=out, panels=tuple(series))
