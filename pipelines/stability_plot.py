"""Training-stability figures: one panel per metric, against training updates.

A run's figure (`plot_stability`) draws every logged point of each loss and Q statistic,
faint, with a smoothed line over it (`smooth`), each evaluation metric at its evaluation
steps, and vertical lines at `StepMarker`s: the switch to the objective's phase 2 and the
update where training diverged. A sweep's figure (`plot_sweep_stability`) draws, per
setting, the mean over its seeds with a ± std band on the steps every seed reached
(`mean_std`), and the same kind of markers.

Drawn with matplotlib's object API (``Figure`` + the Agg canvas), so nothing touches pyplot's
global state or needs a display; safe in Ray workers and tests.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from recrl.pipelines.atomic_output import atomic_write

logger = logging.getLogger(__name__)

History = Mapping[str, Sequence[tuple[int, float]]]
"""Metric name -> ``[(step, value), ...]``."""

MAX_COLUMNS = 4
PANEL_SIZE_IN = (4.0, 3.0)
DPI = 100
EVAL_PREFIX = "eval/"
"""Metrics measured at evaluations: drawn as points joined by a line, not smoothed."""
PANEL_ORDER = (EVAL_PREFIX, "loss/", "q/")
"""Panels are grouped by these name prefixes, in this order (any other name comes last)."""
SMOOTHING = 0.6
"""Weight of the past in the smoothed line (TensorBoard's slider): 0 redraws the raw points."""
RAW_ALPHA = 0.3
"""Opacity of the raw points under the smoothed line."""
BAND_ALPHA = 0.2
"""Opacity of a sweep's ± std band."""


@dataclass(frozen=True)
class StepMarker:
    """A vertical line across every panel at ``step``."""

    step: int
    label: str
    """Legend entry, e.g. ``phase 2 (sac)`` or ``diverged at update 300``."""
    diverged: bool = False
    """Drawn solid red (training diverged there); else dashed grey (a phase switch)."""


@dataclass(frozen=True)
class StabilityPlot:
    """What ``plot_stability`` / ``plot_sweep_stability`` wrote."""

    path: Path
    """The PNG file."""
    panels: tuple[str, ...]
    """Metric names that got a panel, in drawing order (`PANEL_ORDER`, empty ones skipped)."""
    points: dict[str, int] = field(default_factory=dict)
    """Points drawn per panel: a run's raw points; a sweep's mean points, over its settings."""
    markers: tuple[str, ...] = ()
    """Labels of the vertical markers drawn."""


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average ``s_t = w·s_{t-1} + (1 − w)·x_t``, divided by
    ``1 − w^n`` (n finite values so far) so that it starts at the first value, as
    TensorBoard's smoothing does. A non-finite value is NaN in the output and skipped."""
    out, running, count = [], 0.0, 0
    for value in values:
        value = float(value)
        if not math.isfinite(value):
            out.append(math.nan)
            continue
        count += 1
        running = weight * running + (1.0 - weight) * value
        out.append(running / (1.0 - weight**count))
    return out


def mean_std(
    histories: Sequence[Sequence[tuple[int, float]]],
) -> tuple[list[int], list[float], list[float]]:
    """Steps every history has, and the mean and (population) std of the values there. A
    step logged twice by one history (a retried run) counts with its last value."""
    tables = [dict(points) for points in histories]
    if not tables:
        return [], [], []
    steps = sorted(set.intersection(*(set(table) for table in tables)))
    means, stds = [], []
    for step in steps:
        values = [float(table[step]) for table in tables]
        mean = sum(values) / len(values)
        means.append(mean)
        stds.append(math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))
    return steps, means, stds


def plot_stability(
    history: History,
    path: str | os.PathLike,
    *,
    title: str,
    markers: Sequence[StepMarker] = (),
) -> StabilityPlot:
    """Draw one run's ``history`` as a grid of panels, up to `MAX_COLUMNS` a row, each
    against the training step, and save it as a PNG (see the module docstring).

    Points are sorted by step; non-finite values leave a gap. Metrics without points are
    skipped; if none has a point, ``ValueError``. The parent folder is created.
    """
    series = {name: sorted(points, key=lambda p: p[0])
              for name, points in history.items() if len(points) > 0}  # fmt: skip
    names = _ordered(series, f"nothing to plot for {title!r}: the history has no metric with "
                             f"points ({len(history)} metric names given)")  # fmt: skip
    figure, axes = _grid(names)
    points: dict[str, int] = {}
    for name in names:
        ax = axes[name]
        steps = [step for step, _ in series[name]]
        values = [float(value) for _, value in series[name]]
        points[name] = len(values)
        if name.startswith(EVAL_PREFIX):
            ax.plot(steps, values, marker="o", markersize=4, label="at evaluations")
        else:
            (raw,) = ax.plot(steps, values, alpha=RAW_ALPHA, linewidth=1,
                             marker="." if len(values) < 50 else None, label="logged")  # fmt: skip
            ax.plot(steps, smooth(values), color=raw.get_color(), linewidth=1.8,
                    label=f"smoothed ({SMOOTHING:g})")  # fmt: skip
    drawn = _finish(figure, axes, markers, title)
    _save(figure, path, len(names), len(history) - len(names))
    return StabilityPlot(Path(path), tuple(names), points, drawn)


def plot_sweep_stability(
    groups: Mapping[str, Sequence[History]],
    path: str | os.PathLike,
    *,
    title: str,
    markers: Sequence[StepMarker] = (),
) -> StabilityPlot:
    """Draw a sweep: ``groups`` maps a setting's label (``snqn n_neg=10``) to the histories
    of its runs (one per seed). Each panel has, per setting, the mean over its runs with a
    ± std band (`mean_std`), one colour per setting. ``ValueError`` when no metric has a
    point that all runs of a setting share."""
    aggregated: dict[str, dict[str, tuple[list[int], list[float], list[float]]]] = {}
    for label, histories in groups.items():
        names = {name for history in histories for name in history}
        for name in names:
            steps, mean, std = mean_std([history.get(name, ()) for history in histories])
            if steps:
                aggregated.setdefault(name, {})[label] = (steps, mean, std)
    empty = (f"nothing to plot for {title!r}: no metric has a step that every run of a "
             f"setting reached ({len(groups)} settings)")  # fmt: skip
    names = _ordered(aggregated, empty)
    figure, axes = _grid(names)
    colours = {label: f"C{index % 10}" for index, label in enumerate(groups)}
    points: dict[str, int] = {}
    for name in names:
        ax = axes[name]
        for label, (steps, mean, std) in aggregated[name].items():
            n = len(groups[label])
            style = {"marker": "o", "markersize": 3} if name.startswith(EVAL_PREFIX) else {}
            ax.plot(steps, mean, color=colours[label], label=f"{label} (n={n})", **style)
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(steps, low, high, color=colours[label], alpha=BAND_ALPHA, lw=0)
            points[name] = points.get(name, 0) + len(steps)
    drawn = _finish(figure, axes, markers, title)
    _save(figure, path, len(names), 0)
    return StabilityPlot(Path(path), tuple(names), points, drawn)


def _ordered(series: Mapping[str, object], empty: str) -> list[str]:
    """The panel names in `PANEL_ORDER`; ``ValueError(empty)`` when there are none."""
    if not series:
        raise ValueError(empty)

    def rank(name: str) -> int:
        return next((i for i, p in enumerate(PANEL_ORDER) if name.startswith(p)), len(PANEL_ORDER))

    return sorted(series, key=rank)  # stable: history order within a group


def _grid(names: Sequence[str]) -> tuple[Figure, dict[str, object]]:
    n = len(names)
    cols = min(MAX_COLUMNS, n)
    rows = math.ceil(n / cols)
    figure = Figure(figsize=(PANEL_SIZE_IN[0] * cols, PANEL_SIZE_IN[1] * rows), dpi=DPI)
    FigureCanvasAgg(figure)  # attaches itself to the figure
    grid = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(grid, names, strict=False):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
    for ax in grid[n:]:
        ax.set_visible(False)
    return figure, dict(zip(names, grid, strict=False))


def _finish(
    figure: Figure, axes: dict[str, object], markers: Sequence[StepMarker], title: str
) -> tuple[str, ...]:
    """Draw the markers on every panel, a legend on the first one of each kind (evaluation
    panels and the others draw differently), and the title."""
    for ax in axes.values():
        for marker in markers:
            if marker.diverged:
                ax.axvline(marker.step, color="red", linewidth=1.2, label=marker.label)
            else:
                ax.axvline(marker.step, color="grey", linestyle="--", linewidth=1,
                           label=marker.label)  # fmt: skip
    legend_on = {}
    for name, ax in axes.items():
        legend_on.setdefault(name.startswith(EVAL_PREFIX), ax)
    for ax in legend_on.values():
        ax.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return tuple(marker.label for marker in markers)


def _save(figure: Figure, path: str | os.PathLike, panels: int, skipped: int) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png"))  # never half a PNG
    logger.info("wrote %s: %d panels (%d empty metrics skipped)", out, panels, skipped)
