"""Tables and the six-curve figure of the CCQL comparison, from the sweeps of
`benchmarks/ccql_study.sh`.

Reads each trial folder of the sweeps (Tune's ``params.json`` and ``result.json``: the
validation curve) and, for the test split, the trial's MLflow run (its id is in the trial's
``train/checkpoint/progress.json``; the test metrics and the popularity baseline on the same
rows are logged there at the end of training). Prints Markdown tables for `docs/results.md`
and writes the figure. Unfinished sweeps are reported as far as they got, marked so.

The study is longer than one sitting of a two-core machine, and run folders do not outlive
it, so each finished trial is also exported (``--export``) as one small JSON file under
``docs/results/ccql/<study>/``: its validation curve, test metrics and popularity baseline.
Those files are committed; the tables and figure are built from them plus whatever is still
in the sweeps folder, and the study script skips a trial whose file exists.

    python benchmarks/ccql_results.py                       # tables: exports + runs/sweeps
    python benchmarks/ccql_results.py --export              # save finished trials
    python benchmarks/ccql_results.py --figure docs/img/ccql_budget.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "docs" / "results" / "ccql"
VARIANTS = ("sasrec", "sasrec_ac", "snqn", "sa2c", "sasrec_co", "sasrec_ccql")
KS = (5, 10, 20)
CURVE_METRIC = "eval/ndcg_20_purchase"
FORMER_CO_WEIGHT = 0.1
FORMER_CO_WEIGHT_SWEEPS = {
    f"ccql_budget.{v}.s{s}" for v in ("sasrec_co", "sasrec_ccql") for s in (0, 1)
}
"""The contrastive presets' λ_co was 0.1 until the co_weight study moved it to the paper's 1.0;
these four exported trials ran at 0.1, and their rows say so (exports keep only searched
settings, and λ_co was a preset value, not a searched one)."""


@dataclass
class Trial:
    sweep: str
    variant: str
    seed: int
    setting: dict
    steps: list[int]
    val: dict[str, list[float]]
    """Each eval/… metric at ``steps``."""
    total_steps: int
    diverged: bool
    test: dict[str, float] = field(default_factory=dict)
    popularity: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return bool(self.steps) and self.steps[-1] >= self.total_steps and bool(self.test)

    @property
    def study(self) -> str:
        """The comparison a trial belongs to: its sweep name up to the first dot
        (``ccql_budget.sasrec.s1`` is one trial of ``ccql_budget``)."""
        return self.sweep.split(".")[0]

    @property
    def slug(self) -> str:
        extra = "".join(f"-{k}={v}" for k, v in sorted(self.setting.items()))
        return f"{self.variant}-s{self.seed}{extra}"


def export(trial: Trial, root: Path) -> Path:
    """Write one finished trial as ``root/<study>/<slug>.json`` (atomically)."""
    from recrl.pipelines.atomic_output import atomic_write

    path = root / trial.study / f"{trial.slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(trial), indent=1, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_exports(root: Path) -> list[Trial]:
    if not root.is_dir():
        return []
    return [Trial(**json.loads(f.read_text())) for f in sorted(root.glob("*/*.json"))]


def read_trials(sweep_dir: Path, tracking_uri: str | None) -> list[Trial]:
    """Every trial of one sweep folder, with its test metrics when MLflow has them."""
    study = json.loads((sweep_dir / "sweep.json").read_text())["study"]
    total = int(study["fixed"].get("total_steps", 0))
    trials = []
    for params_file in sorted(sweep_dir.glob("*/params.json")):
        params = json.loads(params_file.read_text())
        results = params_file.parent / "result.json"
        lines = results.read_text().splitlines() if results.exists() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        rows = [r for r in rows if "updates" in r]
        by_step: dict[int, dict] = {}
        for row in rows:  # a retried trial reports some steps twice: keep the last
            by_step[int(row["updates"])] = row
        steps = sorted(by_step)
        keys = sorted({k for r in by_step.values() for k in r if k.startswith("eval/")})
        val = {k: [float(by_step[s].get(k, math.nan)) for s in steps] for k in keys}
        setting = {k: v for k, v in params.items() if k not in ("variant", "seed")}
        trial = Trial(sweep_dir.name, params["variant"], int(params["seed"]), setting, steps,
                      val, total, any(r.get("diverged") for r in rows))  # fmt: skip
        progress = params_file.parent / "train" / "checkpoint" / "progress.json"
        if tracking_uri and progress.exists():
            run_id = json.loads(progress.read_text()).get("run_id")
            trial.test, trial.popularity = _test_metrics(tracking_uri, run_id)
        trials.append(trial)
    return trials


def _test_metrics(uri: str, run_id: str | None) -> tuple[dict, dict]:
    if not run_id:
        return {}, {}
    import mlflow

    try:
        metrics = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics
    except Exception:  # a run missing from this store: no test figures
        return {}, {}
    test = {k[5:]: v for k, v in metrics.items() if k.startswith("test/")}
    popularity = {k[16:]: v for k, v in metrics.items() if k.startswith("test_popularity/")}
    return test, popularity


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=0):.3f}"


def label(trial: Trial) -> str:
    setting = dict(trial.setting)
    if trial.sweep in FORMER_CO_WEIGHT_SWEEPS:
        setting["co_weight"] = FORMER_CO_WEIGHT
    elif trial.study == "co_weight":
        setting["co_weight"] = 1.0
    extra = ", ".join(f"{k}={v}" for k, v in sorted(setting.items()))
    return f"{trial.variant}" + (f" ({extra})" if extra else "")


def group(trials: list[Trial]) -> dict[str, list[Trial]]:
    out: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        out[label(trial)].append(trial)
    order = {v: i for i, v in enumerate(VARIANTS)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[1][0].variant, 99), kv[0])))


def final_val_table(trials: list[Trial], event: str) -> str:
    """Val HR/NDCG@5/10/20 of ``event`` at each run's last evaluation (mean ± std over
    seeds)."""
    head = [f"HR@{k}" for k in KS] + [f"NDCG@{k}" for k in KS]
    lines = ["| run | seeds | updates | " + " | ".join(head) + " |",
             "|---|---|---|" + "---|" * len(head)]  # fmt: skip
    for name, runs in group(trials).items():
        cells = [mean_std([t.val.get(f"eval/{m}_{k}_{event}", [math.nan])[-1] for t in runs])
                 for m in ("hr", "ndcg") for k in KS]  # fmt: skip
        seeds = ",".join(str(t.seed) for t in runs)
        updates = "/".join(str(t.steps[-1] if t.steps else 0) for t in runs)
        mark = "" if all(t.finished for t in runs) else " (running)"
        lines.append(f"| {name}{mark} | {seeds} | {updates} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_table(trials: list[Trial], event: str) -> str:
    """Test HR/NDCG@5/10/20 of ``event`` (mean ± std over seeds), popularity last."""
    head = [f"HR@{k}" for k in KS] + [f"NDCG@{k}" for k in KS]
    lines = ["| run | seeds | updates | " + " | ".join(head) + " |",
             "|---|---|---|" + "---|" * len(head)]  # fmt: skip
    popularity: list[dict] = []
    for name, runs in group(trials).items():
        done = [t for t in runs if t.test]
        cells = [mean_std([t.test.get(f"{m}_{k}_{event}", math.nan) for t in done])
                 for m in ("hr", "ndcg") for k in KS]  # fmt: skip
        seeds = ",".join(str(t.seed) for t in runs)
        updates = "/".join(str(t.steps[-1] if t.steps else 0) for t in runs)
        mark = "" if all(t.finished for t in runs) else " (running)"
        lines.append(f"| {name}{mark} | {seeds} | {updates} | " + " | ".join(cells) + " |")
        popularity += [t.popularity for t in done]
    if popularity:
        cells = [mean_std([p.get(f"{m}_{k}_{event}", math.nan) for p in popularity[:1]])
                 for m in ("hr", "ndcg") for k in KS]  # fmt: skip
        lines.append("| popularity (same rows) | — | — | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def val_table(trials: list[Trial], metric: str) -> str:
    """Per run: best val value and its update, final value, and the fall from best to final."""
    lines = [f"| run | seed | best {metric} | at update | final | fall from best | diverged |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, runs in group(trials).items():
        for t in runs:
            values = t.val.get(metric)
            if not values:
                continue
            best = int(np.nanargmax(values))
            fall = (values[best] - values[-1]) / values[best] if values[best] else 0.0
            mark = "" if t.finished else " (running)"
            diverged = "yes" if t.diverged else "no"
            lines.append(f"| {name}{mark} | {t.seed} | {values[best]:.4f} | {t.steps[best]} | "
                         f"{values[-1]:.4f} | {fall:.1%} | {diverged} |")  # fmt: skip
    return "\n".join(lines)


def figure(trials: list[Trial], path: Path, metric: str, title: str) -> None:
    """One line per run group (mean over seeds, band ± std) of ``metric`` against updates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from recrl.pipelines.atomic_output import atomic_write

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, runs in group(trials).items():
        common = sorted(set.intersection(*(set(t.steps) for t in runs)))
        if not common:
            continue
        table = np.array([[t.val[metric][t.steps.index(s)] for s in common] for t in runs])
        mean, std = table.mean(axis=0), table.std(axis=0)
        seeds = f"{len(runs)} seed" + ("s" if len(runs) > 1 else "")
        ax.plot(common, mean, marker="o", markersize=3, label=f"{name} ({seeds})")
        if len(runs) > 1:
            ax.fill_between(common, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("updates")
    ax.set_ylabel(f"val {metric.removeprefix('eval/')}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def negatives_figure(trials: list[Trial], path: Path, metric: str) -> None:
    """One panel per variant, a line per n_neg, of ``metric`` against updates; a diverged
    run's line is dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from recrl.pipelines.atomic_output import atomic_write

    variants = [v for v in VARIANTS if any(t.variant == v for t in trials)]
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.8), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, variant in zip(axes[0], variants, strict=True):
        runs = sorted((t for t in trials if t.variant == variant),
                      key=lambda t: int(t.setting.get("n_neg", 0)))  # fmt: skip
        for t in runs:
            style = "--" if t.diverged else "-"
            name = f"n_neg {t.setting.get('n_neg')}" + (" (diverged)" if t.diverged else "")
            ax.plot(t.steps, t.val[metric], style, marker="o", markersize=3, label=name)
        ax.set_title(variant)
        ax.set_xlabel("updates")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"val {metric.removeprefix('eval/')}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default="runs/sweeps", help="sweeps folder")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store of the trials (default: recrl's)")  # fmt: skip
    parser.add_argument("--figure", default=None, help="write the six-curve figure here")
    parser.add_argument("--negatives-figure", default=None,
                        help="write the negatives figure (a panel per variant) here")  # fmt: skip
    parser.add_argument("--results", default=str(RESULTS),
                        help="folder of exported trials (default: docs/results/ccql)")  # fmt: skip
    parser.add_argument("--export", action="store_true",
                        help="save the finished trials of the sweeps folder first")  # fmt: skip
    args = parser.parse_args(argv)

    from recrl.pipelines.tracking_names import absolute_tracking_uri

    uri = absolute_tracking_uri(args.tracking_uri)
    storage, results = Path(args.storage), Path(args.results)
    live = [t for d in sorted(storage.iterdir()) if (d / "sweep.json").exists()
            for t in read_trials(d, uri)] if storage.is_dir() else []  # fmt: skip
    if args.export:
        for trial in live:
            if trial.finished:
                print(f"exported {export(trial, results)}")
    saved = read_exports(results)
    known = {(t.study, t.slug) for t in saved}
    trials = saved + [t for t in live if (t.study, t.slug) not in known]
    sweeps: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        sweeps[trial.study].append(trial)
    comparison = sweeps.get("ccql_budget", [])
    comparison = comparison + sweeps.get("co_weight", [])  # λ_co 1.0 beside the former 0.1
    sections = [
        ("Six variants, RC15 sample (purchase)", comparison, "purchase", CURVE_METRIC),
        ("Six variants, RC15 sample (click)", comparison, "click", "eval/ndcg_20_click"),
        ("Click-only RC15 sample", sweeps.get("click_only", []), "click", "eval/ndcg_20_click"),
        ("Negative actions", sweeps.get("negatives_budget", []), "purchase", CURVE_METRIC),
        ("Longer runs (purchase)", sweeps.get("long_budget", []), "purchase", CURVE_METRIC),
        ("Longer runs (click)", sweeps.get("long_budget", []), "click", "eval/ndcg_20_click"),
    ]  # fmt: skip
    for title, trials, event, metric in sections:
        if not trials:
            print(f"## {title}\n\n(no runs yet)\n")
            continue
        print(f"## {title}\n\nTest split, {event}:\n\n{test_table(trials, event)}\n")
        print(f"Validation split at the last evaluation, {event}:\n\n"
              f"{final_val_table(trials, event)}\n")  # fmt: skip
        print(f"Validation curve ({metric}):\n\n{val_table(trials, metric)}\n")
    if args.figure and comparison:
        figure(comparison, Path(args.figure), CURVE_METRIC,
               "RC15 sample: val purchase NDCG@20, six variants (λ_co 0.1 and 1.0)")  # fmt: skip
        print(f"figure: {args.figure}")
    negatives = sweeps.get("negatives_budget", [])
    if args.negatives_figure and negatives:
        negatives_figure(negatives, Path(args.negatives_figure), CURVE_METRIC)
        print(f"figure: {args.negatives_figure}")


if __name__ == "__main__":
    main()
