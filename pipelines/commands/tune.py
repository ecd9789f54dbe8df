"""``recrl tune`` and ``recrl report``: Ray Tune sweeps of SASRec variants (or bandit
runs) and their stability report (design.md §7)."""

from __future__ import annotations

import argparse
from pathlib import Path

_TUNE_EPILOG = """\
a study file (tune_configs/*.yaml) names:
  name, data, variants        what is trained, on which prepared dataset
  trainable                   sasrec (default: `recrl train` trials), bandit (`recrl
                              bandit` trials: no variants; policy/env are settings) or
                              slate (`recrl slate` trials: policy, k, gamma... settings)
  fixed                       settings of every trial (any `recrl train --set` key, a
                              `recrl bandit --set` key for a bandit study, a `recrl slate`
                              option for a slate study)
  search                      KEY: {grid|choice: [..]} or {uniform|loguniform|randint: [lo, hi]}
  seeds                       a grid dimension; the report averages over it
  metric, mode                e.g. eval/ndcg_20_purchase, max
  scheduler                   {type: none} or {type: asha, grace_period: 2}
  resources                   {cpu: 1, gpu: 0.25, data_cpu: 1} per trial: cpu/gpu for the
                              trial and its learner, data_cpu (>= 1) kept free for its
                              Ray Data reader; trials run at once as CPUs allow. GPU
                              requests are dropped with a notice when the cluster has none

--set KEY=VALUE replaces a top-level key (data, seeds, name, ...) or a fixed setting.
A crashed trial is retried from its last checkpoint (max_failures); a trial whose losses
go non-finite is recorded as diverged, not retried. The sweep folder is
runs/sweeps/<name>/ (report.png, report.csv, one folder per trial); MLflow gets a parent
run per sweep and a child run per trial.

examples:
  recrl tune tune_configs/smoke_cpu.yaml --set data=runs/demo/prepared
  recrl tune tune_configs/negatives.yaml --set data=data/rc15 --set total_steps=2000
  recrl tune tune_configs/negatives.yaml --resume        # continue an interrupted sweep
  recrl tune tune_configs/bandit_ren_lambda.yaml --set rounds=500   # REN's λ_d on SYN-*
  recrl tune tune_configs/cdqn.yaml --set env_steps=1000 --set eval_interval=250
  RAY_ADDRESS=http://head:8265 ray job submit --working-dir . -- recrl tune ...
"""

_REPORT_EPILOG = """\
A run counts as diverged when it stopped on non-finite values, when its final metric is
more than report.divergence_drop (0.2) below its own best, or when |Q| exceeded
report.q_blowup (10) × r_max / (1 − γ). A run that has not reached its last evaluation
(still running, or interrupted) is listed as unfinished and not judged by its latest value.
Written next to the trials as report.png (one panel per variant, mean ± std over seeds
against updates) and report.csv, logged to the sweep's parent MLflow run, and printed.

example:
  recrl report runs/sweeps/negatives
"""


def register(commands) -> None:
    p = commands.add_parser(
        "tune",
        help="run a hyperparameter sweep (Ray Tune) from a tune_configs/ study",
        description="Sweep SASRec variants (or bandit runs) with Ray Tune as a study file "
        "describes, track each trial as a child MLflow run of the sweep's run, and write the "
        "stability report (metric against updates or rounds, mean ± std over seeds) at the "
        "end.",
        epilog=_TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", type=Path, help="study file, e.g. tune_configs/smoke_cpu.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study key or setting (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument("--storage", type=Path, default=None,
                   help="folder of sweeps (runs/sweeps)")  # fmt: skip
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=run)

    r = commands.add_parser(
        "report",
        help="stability report of a sweep folder (PNG + CSV + table)",
        description="Summarise a finished or running sweep: per variant and setting, the "
        "validation metric against updates (mean ± std over seeds), best and final values, "
        "and which runs diverged.",
        epilog=_REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("sweep", type=Path, help="sweep folder, e.g. runs/sweeps/negatives")
    r.add_argument("--no-mlflow", action="store_true", help="do not log to the parent run")
    r.set_defaults(handler=run_report)


def run(args) -> int:
    from recrl.pipelines.checks import check_output_dir, check_prepared_dataset
    from recrl.pipelines.commands.overrides import parse_overrides
    from recrl.pipelines.tune.study import load_study
    from recrl.pipelines.tune.sweep import DEFAULT_STORAGE, run_sweep

    study = load_study(args.study, parse_overrides(args.overrides))
    if study.trainable == "sasrec":
        check_prepared_dataset(study.data, f"{args.study}: data")
    check_output_dir(args.storage or DEFAULT_STORAGE, "--storage")
    report = run_sweep(study, storage=args.storage or DEFAULT_STORAGE, resume=args.resume,
                       tracking=not args.no_mlflow)  # fmt: skip
    print(report.table)
    print(f"\nreport: {report.figure}\n        {report.csv}")
    if report.experiment_id is not None:
        from recrl.pipelines.tracking import dashboard_command

        print(f"MLflow: {dashboard_command(experiment_id=report.experiment_id)}")
    return 0


def run_report(args) -> int:
    from recrl.pipelines.errors import UserError
    from recrl.pipelines.tracking import NullTracker, Tracker
    from recrl.pipelines.tune.sweep import load_sweep_study, write_report

    try:
        study, parent = load_sweep_study(args.sweep)
    except FileNotFoundError as exc:
        raise UserError(f"recrl report {args.sweep}: not a sweep folder ({exc})") from None
    tracker = NullTracker()
    if parent and not args.no_mlflow:
        tracker = Tracker(experiment=study.experiment)
        tracker.resume(parent)
    with tracker:
        report = write_report(args.sweep, study, tracker)
    print(report.table)
    print(f"\nreport: {report.figure}\n        {report.csv}")
    return 0
