"""Benchmark: a whole sweep in one GPU window — aggregate updates/s and wall time.

Runs a study (default ``tune_configs/negatives_gpu.yaml``: snqn, sa2c and sasrec_ccql ×
n_neg {1, 5, 10, 20, 50} × 2 seeds = 30 trials) through `recrl.pipelines.tune.sweep.run_sweep`,
the code path of ``recrl tune``, at a budget of ``--steps`` updates per trial, and reports
the wall time of the sweep and its aggregate throughput: the updates of all trials divided
by that wall time. Target on one machine with one H200 and 16 CPUs: ≥ 500 updates/s, i.e.
30 trials × 6,000 updates in ≤ 6 minutes.

    python benchmarks/gpu_study.py --data data/rc15 --steps 6000 --out runs/gpu_study.json
    python benchmarks/gpu_study.py --data data/rc15 --steps 40 --eval-interval 20 \\
        --set variants=snqn --set seeds=0,1 --set 'search={n_neg: {grid: [5]}}' \\
        --set hidden_size=16 --set batch_size=32            # 2 trials, a CPU smoke run

Besides the sweep's wall time (Tune's start, sharing the train split, every trial, the
report), the summary gives the span of the trials themselves (first trial's function start
to the last trial's final checkpoint) and each trial's updates, seconds (function start to
last result) and updates/s. Without ``RAY_ADDRESS`` (or
with ``RAY_ADDRESS=local``) a local Ray runtime is started with ``--num-cpus`` logical CPUs
(default: every CPU) and every GPU it finds; MLflow is off unless ``--mlflow``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recrl.pipelines.tune.study import StudyConfig, load_study  # noqa: E402

logger = logging.getLogger("gpu_study")

DEFAULT_STUDY = REPO / "tune_configs" / "negatives_gpu.yaml"
TARGET_UPDATES_PER_S = 500.0
"""30 trials × 6,000 updates in 6 minutes."""
EVALS_PER_RUN = 12
"""Evaluations per trial when ``--eval-interval`` is not given (the study's 6,000 / 500)."""


@dataclass
class TrialSummary:
    """One trial of the sweep, from its Tune ``params.json`` and ``result.json``."""

    name: str
    params: dict[str, Any]
    """Variant, seed and searched values."""
    updates: int
    """Updates it trained (up to where it diverged, if it did)."""
    seconds: float
    """Its running time, from the start of its function to its last result."""
    updates_per_s: float
    diverged: bool
    metric: float | None
    """The study's metric at its last evaluation."""
    started: float
    """Unix time its function started (after its actor's start-up: Ray, imports)."""
    ended: float
    """Unix time it finished: its last file written (the test evaluation and final
    checkpoint come after its last result), or its last result."""


@dataclass
class StudySummary:
    """What `run_gpu_study` measured; written as JSON by ``--out``."""

    study: str
    sweep_dir: str
    steps: int
    """Updates each trial was asked for."""
    trials: int
    """Trials with a result."""
    expected_trials: int
    """Trials of the study's grid."""
    total_updates: int
    wall_s: float
    """Wall time of the whole sweep (`run_sweep`): the number the target is about."""
    updates_per_s: float
    """``total_updates / wall_s``."""
    trials_span_s: float
    """First trial start to last trial end (`TrialSummary.started`, `TrialSummary.ended`):
    the sweep's wall time without Tune's start, the trial actors' start-up and the report."""
    max_concurrent_trials: int
    shared_data: bool
    cluster: dict[str, float]
    """Ray's CPU and GPU counts."""
    resources: dict[str, Any]
    """What each trial asked for (cpu, gpu, data_cpu)."""
    target_updates_per_s: float = TARGET_UPDATES_PER_S
    trial_results: list[TrialSummary] = field(default_factory=list)

    @property
    def meets_target(self) -> bool:
        return self.updates_per_s >= self.target_updates_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meets_target": self.meets_target}


def study_at_budget(
    path: str | Path,
    *,
    steps: int,
    eval_interval: int | None = None,
    data: str | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> StudyConfig:
    """The study of ``path`` at ``steps`` updates per trial, evaluated ``eval_interval``
    apart (default: `EVALS_PER_RUN` times), sa2c's phase 2 over the second half as in the
    full study; ``overrides`` as ``recrl tune --set`` takes them, applied last."""
    settings: dict[str, Any] = {
        "total_steps": steps,
        "eval_interval": eval_interval or max(1, steps // EVALS_PER_RUN),
        "warmup_steps": steps // 2,
    }
    if data is not None:
        settings["data"] = data
    if name is not None:
        settings["name"] = name
    return load_study(path, {**settings, **(overrides or {})})


def run_gpu_study(
    study: StudyConfig, storage: str | Path, *, tracking: bool = False
) -> StudySummary:
    """Run ``study`` as ``recrl tune`` does (Ray must be up) and summarise the sweep."""
    import ray
    from recrl.pipelines.tune.sweep import max_concurrent_trials, run_sweep, with_reader_cpus

    cluster = ray.cluster_resources()
    concurrency = max_concurrent_trials(with_reader_cpus(study), cluster.get("CPU", 0.0))
    start = time.perf_counter()
    run_sweep(study, storage=storage, tracking=tracking)
    wall = time.perf_counter() - start
    sweep_dir = Path(storage).resolve() / study.name
    trials = read_trials(sweep_dir, study)
    total = sum(t.updates for t in trials)
    span = max(t.ended for t in trials) - min(t.started for t in trials) if trials else 0.0
    return StudySummary(
        study=study.name,
        sweep_dir=str(sweep_dir),
        steps=int(study.fixed["total_steps"]),
        trials=len(trials),
        expected_trials=study.n_grid_points() * study.num_samples,
        total_updates=total,
        wall_s=wall,
        updates_per_s=total / wall,
        trials_span_s=span,
        max_concurrent_trials=concurrency,
        shared_data=study.shared_data,
        cluster={"CPU": cluster.get("CPU", 0.0), "GPU": cluster.get("GPU", 0.0)},
        resources=asdict(study.resources),
        trial_results=trials,
    )


def read_trials(sweep_dir: Path, study: StudyConfig) -> list[TrialSummary]:
    """Every trial folder of ``sweep_dir`` that reported a result, by name."""
    trials = []
    for params_file in sorted(sweep_dir.glob("*/params.json")):
        rows = _rows(params_file.parent / "result.json")
        if not rows:
            continue
        last = rows[-1]
        # A trial that diverged reports its last good evaluation and where it stopped.
        updates = int(max(r.get("diverged_at", r.get("updates", 0)) for r in rows))
        seconds = float(last["time_total_s"])
        evals = [r for r in rows if study.metric in r]
        trials.append(
            TrialSummary(
                name=params_file.parent.name,
                params=json.loads(params_file.read_text()),
                updates=updates,
                seconds=seconds,
                updates_per_s=updates / seconds if seconds else 0.0,
                diverged=any(r.get("diverged", 0) == 1 for r in rows),
                metric=float(evals[-1][study.metric]) if evals else None,
                started=float(last["timestamp"]) - seconds,
                ended=max(float(last["timestamp"]), _newest_mtime(params_file.parent)),
            )
        )
    return trials


def _newest_mtime(folder: Path) -> float:
    return max((f.stat().st_mtime for f in folder.rglob("*") if f.is_file()), default=0.0)


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_summary(summary: StudySummary) -> str:
    lines = [f"{'trial':<48} {'updates':>8} {'seconds':>8} {'upd/s':>7} {'metric':>8}"]
    for t in summary.trial_results:
        metric = f"{t.metric:.4f}" if t.metric is not None else "-"
        flag = "  diverged" if t.diverged else ""
        lines.append(f"{t.name[:48]:<48} {t.updates:>8} {t.seconds:>8.1f} "
                     f"{t.updates_per_s:>7.1f} {metric:>8}{flag}")  # fmt: skip
    verdict = "meets" if summary.meets_target else "misses"
    lines += [
        "",
        f"{summary.trials}/{summary.expected_trials} trials × {summary.steps} updates = "
        f"{summary.total_updates} updates",
        f"cluster {summary.cluster['CPU']:g} CPUs, {summary.cluster['GPU']:g} GPUs; up to "
        f"{summary.max_concurrent_trials} trials at once; shared train split: "
        f"{summary.shared_data}",
        f"sweep wall time {summary.wall_s:.1f} s (trials' span {summary.trials_span_s:.1f} s): "
        f"{summary.updates_per_s:.1f} updates/s aggregate, {verdict} the target of "
        f"{summary.target_updates_per_s:g}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from recrl.pipelines.commands.overrides import parse_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY)
    parser.add_argument("--data", help="prepared dataset (default: the study's)")
    parser.add_argument("--steps", type=int, default=6000, help="updates per trial")
    parser.add_argument("--eval-interval", type=int, default=None,
                        help=f"default: --steps / {EVALS_PER_RUN}")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="as recrl tune --set (repeatable)")  # fmt: skip
    parser.add_argument("--storage", type=Path, default=Path("/tmp/recrl_gpu_study"),
                        help="folder of the sweep")  # fmt: skip
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="logical CPUs of a local Ray (default: all)")  # fmt: skip
    parser.add_argument("--mlflow", action="store_true", help="track the sweep in MLflow")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from recrl.pipelines.ray_runtime import ensure_ray

    if os.environ.get("RAY_ADDRESS", "local") == "local":
        os.environ.pop("RAY_ADDRESS", None)  # a local runtime, with --num-cpus honoured
    ensure_ray(num_cpus=args.num_cpus)
    name = f"gpu_study-{time.strftime('%Y%m%d-%H%M%S')}"
    study = study_at_budget(args.study, steps=args.steps, eval_interval=args.eval_interval,
                            data=args.data, name=name,
                            overrides=parse_overrides(args.overrides))  # fmt: skip
    summary = run_gpu_study(study, args.storage, tracking=args.mlflow)
    print(format_summary(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary.to_dict(), indent=2))
        print(f"\nsummary: {args.out}")
    return 0 if summary.trials == summary.expected_trials else 1


if __name__ == "__main__":
    sys.exit(main())
