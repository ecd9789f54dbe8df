"""Stability report of a sweep (design.md §7; the SASRec-CCQL paper's Figures 3-4).

For each variant and setting, the validation metric against training updates (bandit
studies: the reward metric against rounds, REN Fig. 1) as mean ± std over seeds, the best
and final values, and a divergence flag per run: a run has diverged when it stopped on
non-finite values, when its final metric fell more than ``divergence_drop`` (a fraction)
below its own best (judged only once the run has reached its last evaluation), or when
|Q| exceeded ``q_blowup`` times the largest possible return r_max / (1 − γ). Written as
``report.png`` + ``report.csv`` and printed as a table. Reads only the sweep folder (Tune's
``params.json`` and ``result.json`` of each trial), so it runs anywhere the folder is,
without Ray.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from recrl.pipelines.atomic_output import atomic_write
from recrl.pipelines.stability_plot import StabilityPlot, StepMarker, plot_sweep_stability
from recrl.pipelines.tune.study import ReportConfig, StudyConfig

logger = logging.getLogger(__name__)

SEED_KEY = "seed"
VARIANT_KEY = "variant"


@dataclass
class RunCurve:
    """One trial's validation curve and the Q statistics reported with it."""

    name: str
    variant: str
    """Value of the study's panel key (``report.panel``: the variant, or e.g. the env)."""
    setting: dict[str, Any]
    """Searched values of the trial, seed excluded (the runs of a group differ by seed)."""
    seed: int
    steps: np.ndarray
    """Updates (rounds) at each evaluation, increasing."""
    values: np.ndarray
    """The metric at those updates."""
    q_abs_max: float = 0.0
    """Largest |q/max| or |q/mean| reported."""
    stopped_non_finite: bool = False
    q_limit: float = math.inf
    """r_max / (1 − γ) × q_blowup for this run's γ."""
    divergence: str | None = None
    """Why the run counts as diverged (None: stable); set by `judge`."""
    final_step: int | None = None
    """The step of the run's last evaluation when it finishes (None: unknown)."""
    phase_step: int | None = None
    """Update at which the run's objective switches to its phase 2 (None: it never does)."""
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """The run's stability history (every logged loss and Q statistic, eval metrics), from
    its training job's last checkpoint; empty when the trial left none (bandit, slate)."""

    @property
    def finished(self) -> bool:
        """Whether the run reached its last evaluation: a running or interrupted one has
        not, and its latest value is not a final one."""
        if self.final_step is None:
            return True
        return bool(len(self.steps) and self.steps[-1] >= self.final_step)


@dataclass
class GroupSummary:
    """The runs of one variant/setting, over seeds."""

    variant: str
    setting: str
    runs: list[RunCurve] = field(default_factory=list)
    steps: np.ndarray | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @property
    def diverged(self) -> list[RunCurve]:
        return [run for run in self.runs if run.divergence]

    def best(self, mode: str) -> tuple[float, int]:
        """Best mean value and its step (NaN, 0 when no run reported an evaluation)."""
        if np.isnan(self.mean).all():
            return math.nan, 0
        index = int(np.nanargmax(self.mean) if mode == "max" else np.nanargmin(self.mean))
        return float(self.mean[index]), int(self.steps[index])

    def final(self) -> tuple[float, float]:
        """Mean and std over seeds of each run's last value."""
        last = np.array([run.values[-1] for run in self.runs if len(run.values)])
        if not len(last):
            return math.nan, math.nan
        return float(last.mean()), float(last.std(ddof=0))


def judge(run: RunCurve, config: ReportConfig, mode: str = "max") -> str | None:
    """Why ``run`` diverged, or None when it is stable (see the module docstring)."""
    if run.stopped_non_finite:
        return "non-finite loss or Q"
    if run.q_abs_max > run.q_limit:
        return f"|Q| reached {run.q_abs_max:.3g} > {run.q_limit:.3g}"
    if len(run.values) and run.finished:  # a running trial's latest value is not its final
        best = run.values.max() if mode == "max" else run.values.min()
        final = run.values[-1]
        fall = (best - final) if mode == "max" else (final - best)
        if best != 0 and fall > config.divergence_drop * abs(best):
            return f"final {final:.4g} is {fall / abs(best):.0%} off its best {best:.4g}"
    return None


def summarize(runs: list[RunCurve], config: ReportConfig, mode: str = "max") -> list[GroupSummary]:
    """Judge each run and group them by variant and setting; each group's mean ± std curve
    is taken over the evaluation steps every run of it reached."""
    groups: dict[tuple[str, str], GroupSummary] = {}
    for run in runs:
        run.divergence = judge(run, config, mode)
        key = (run.variant, setting_label(run.setting))
        groups.setdefault(key, GroupSummary(run.variant, key[1])).runs.append(run)
    for group in groups.values():
        common = sorted(set.intersection(*(set(r.steps.tolist()) for r in group.runs)))
        group.steps = np.array(common, dtype=np.int64)
        table = np.array(
            [[run.values[run.steps.tolist().index(step)] for step in common] for run in group.runs]
        ).reshape(len(group.runs), len(common))
        group.mean = table.mean(axis=0) if len(common) else np.array([np.nan])
        group.std = table.std(axis=0, ddof=0) if len(common) else np.array([np.nan])
        if not len(common):
            group.steps = np.array([0])
    return sorted(groups.values(), key=lambda g: (g.variant, _sort_key(g.runs[0].setting)))


def setting_label(setting: dict[str, Any]) -> str:
    if not setting:
        return "default"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(setting.items()))


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _sort_key(setting: dict[str, Any]) -> tuple:
    return tuple((k, (0, v) if isinstance(v, int | float) else (1, str(v)))
                 for k, v in sorted(setting.items()))  # fmt: skip


# --- reading a sweep folder ---------------------------------------------------------------


def read_sweep(sweep_dir: str | Path, study: StudyConfig, r_max: float = 1.0) -> list[RunCurve]:
    """The curves of every trial folder under ``sweep_dir`` (Tune's ``params.json`` and
    ``result.json``). ``r_max`` is the largest reward (meta.json) for the Q bound; each
    run's γ is its resolved training setting (bandit runs have no Q values to bound)."""
    metric, config, step_key = study.metric, study.report, study.kind.step_key
    panel = config.panel
    runs = []
    for params_file in sorted(Path(sweep_dir).glob("*/params.json")):
        trial = params_file.parent
        params = json.loads(params_file.read_text())
        rows = _results(trial / "result.json")
        evals = [r for r in rows if metric in r and step_key in r and r.get("diverged", 0) == 0]
        evals.sort(key=lambda r: r[step_key])
        q_values = [abs(float(r[k])) for r in rows for k in ("q/max", "q/mean") if k in r]
        searched = {k: v for k, v in params.items() if k not in (SEED_KEY, VARIANT_KEY)}
        variant = params.get(VARIANT_KEY, next(iter(study.variants), None))
        trial_config = study.trial_settings(variant, 0, searched)
        gamma = study.kind.discount(trial_config)
        group = params.get(panel, study.fixed.get(panel)) if panel != VARIANT_KEY else variant
        setting = {k: v for k, v in searched.items() if k != panel}
        runs.append(
            RunCurve(
                name=trial.name,
                variant=str(group if group is not None else study.name),
                setting=setting,
                seed=int(params.get(SEED_KEY, 0)),
                steps=np.array([int(r[step_key]) for r in evals], dtype=np.int64),
                values=np.array([float(r[metric]) for r in evals], dtype=np.float64),
                q_abs_max=max((q for q in q_values if math.isfinite(q)), default=0.0),
                stopped_non_finite=any(r.get("diverged", 0) == 1 for r in rows)
                or any(not math.isfinite(q) for q in q_values),
                q_limit=math.inf
                if gamma is None
                else config.q_blowup * r_max / max(1e-9, 1.0 - gamma),
                final_step=study.kind.final_step(trial_config),
                phase_step=_phase_step(trial_config),
                history=_trial_history(trial),
            )
        )
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no trial folders (*/params.json); is it a sweep?")
    return runs


def _phase_step(trial_config: Any) -> int | None:
    objective = getattr(trial_config, "objective", None)
    total = getattr(trial_config, "total_steps", None)
    if objective is None or not objective.has_phase2 or objective.warmup_steps >= total:
        return None
    return int(objective.warmup_steps)


def _trial_history(trial: Path) -> dict[str, list[tuple[int, float]]]:
    """The stability history a SASRec trial's job saved with its last checkpoint."""
    from recrl.pipelines.sasrec.job import PROGRESS_FILE, latest_checkpoint
    from recrl.pipelines.tune.trainable import TRIAL_RUN_DIR

    checkpoint = latest_checkpoint(trial / TRIAL_RUN_DIR)
    if checkpoint is None:
        return {}
    try:
        saved = json.loads((checkpoint / PROGRESS_FILE).read_text()).get("history", {})
    except (OSError, ValueError):
        logger.warning("%s: unreadable %s, left out of the stability figure", trial, PROGRESS_FILE)
        return {}
    return {name: [(int(step), float(value)) for step, value in points]
            for name, points in saved.items()}  # fmt: skip


def _results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


# --- output -------------------------------------------------------------------------------


def format_table(groups: list[GroupSummary], metric: str, mode: str = "max") -> str:
    header = f"{'variant':<12} {'setting':<28} {'runs':>4} {'best mean':>10} {'at':>6} " \
             f"{'final mean±std':>16} {'diverged':>8}"  # fmt: skip
    lines = [f"stability of {metric} (mean over seeds)", header, "-" * len(header)]
    for g in groups:
        best, at = g.best(mode)
        final, final_std = g.final()
        lines.append(
            f"{g.variant:<12} {g.setting[:28]:<28} {len(g.runs):>4} {best:>10.4f} {at:>6} "
            f"{final:>9.4f}±{final_std:<6.4f} {len(g.diverged):>3}/{len(g.runs):<4}"
        )
    for g in groups:
        for run in g.diverged:
            lines.append(f"  diverged: {run.name}: {run.divergence}")
    for g in groups:
        for run in g.runs:
            if not run.finished:
                last = int(run.steps[-1]) if len(run.steps) else 0
                lines.append(f"  unfinished: {run.name}: last evaluation at {last} of "
                             f"{run.final_step} (final values are its latest)")  # fmt: skip
    return "\n".join(lines)


def write_csv(groups: list[GroupSummary], path: Path, mode: str = "max") -> Path:
    """``report.csv``, replaced atomically (`atomic_write`): never half a table."""
    return atomic_write(path, lambda tmp: _write_csv(groups, tmp, mode))


def _write_csv(groups: list[GroupSummary], path: Path, mode: str) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "setting", "runs", "best_mean", "best_step", "final_mean",
                         "final_std", "diverged_runs", "diverged_reasons"])  # fmt: skip
        for g in groups:
            best, at = g.best(mode)
            final, final_std = g.final()
            reasons = "; ".join(f"{r.name}: {r.divergence}" for r in g.diverged)
            row = [g.variant, g.setting, len(g.runs), f"{best:.6f}", at, f"{final:.6f}"]
            writer.writerow([*row, f"{final_std:.6f}", len(g.diverged), reasons])


def write_figure(
    groups: list[GroupSummary], path: Path, metric: str, title: str = "",
    x_label: str = "updates",
) -> Path:  # fmt: skip
    """One panel per variant (panel key), a line per setting with a ± std band; diverged
    settings are drawn dashed. The PNG is replaced atomically (`atomic_write`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_variant: dict[str, list[GroupSummary]] = defaultdict(list)
    for g in groups:
        by_variant[g.variant].append(g)
    n = len(by_variant)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False, sharey=True)
    for ax, (variant, variant_groups) in zip(axes[0], by_variant.items(), strict=True):
        for g in variant_groups:
            style = "--" if g.diverged else "-"
            label = f"{g.setting} (n={len(g.runs)})" + (" diverged" if g.diverged else "")
            (line,) = ax.plot(g.steps, g.mean, style, marker="o", markersize=3, label=label)
            ax.fill_between(g.steps, g.mean - g.std, g.mean + g.std, alpha=0.2,
                            color=line.get_color())  # fmt: skip
        ax.set_title(variant)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    shown = f"val {metric.removeprefix('eval/')}" if metric.startswith("eval/") else metric
    axes[0][0].set_ylabel(f"{shown} (mean ± std over seeds)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def write_stability_figure(
    groups: list[GroupSummary], path: Path, title: str = ""
) -> StabilityPlot | None:
    """The sweep's stability figure (`recrl.pipelines.stability_plot.plot_sweep_stability`):
    per setting, every loss, Q statistic and eval metric its runs logged, mean ± std over
    seeds, with the phase switches and the last evaluation of each diverged run marked.
    None (nothing written) when no trial left a history (bandit and slate sweeps)."""
    histories = {
        f"{g.variant} {g.setting}": [run.history for run in g.runs if run.history] for g in groups
    }
    histories = {label: runs for label, runs in histories.items() if runs}
    if not histories:
        return None
    phases = sorted({run.phase_step for g in groups for run in g.runs if run.phase_step})
    markers = [StepMarker(step, f"phase 2 at {step}") for step in phases]
    markers += [
        StepMarker(int(run.steps[-1]) if len(run.steps) else 0,
                   f"diverged: {g.variant} {g.setting} seed={run.seed}", diverged=True)
        for g in groups for run in g.diverged
    ]  # fmt: skip
    try:
        return plot_sweep_stability(histories, path, title=title, markers=markers)
    except ValueError as error:  # runs of a setting that share no step: the report stands
        logger.warning("no sweep stability figure: %s", error)
        return None
