"""``recrl ope``: off-policy estimates of Open Bandit policies' click rates, or of a trained
SASRec-family model's value on a sequential log with propensities (design.md §9)."""

from __future__ import annotations

import argparse
import textwrap

_EPILOG = """\
estimators (--estimators; w = π(a|x)/μ(a|x), the logged propensity μ; q̂ the reward model):
{estimators}

evaluations (--evaluations, target:log, on the Open Bandit logs of --data):
{evaluations}

a SASRec-family model on a sequential log (--log LOG --policy-model MODEL, design.md §9.6):
  LOG is .parquet or .csv, one row per impression: history (the session's items before it,
  raw ids, oldest first), candidates (optional: the ids the logging policy chose from;
  without it, every item), item (the one shown), propensity (the logging policy's
  probability of showing it) and reward; candidate_expected_reward (optional, simulators)
  gives the truth. In a CSV a list is one cell, "id id id". MODEL is the run folder of a
  tracked `recrl train`, its model/ folder, or a runs:/ or models:/ URI. The model acts as
  --policy: softmax of its scores over the row's candidates at --temperature, or uniform
  over its --top-k best. Rows whose candidates the model cannot score are left out and
  counted; history items it does not know are left out of its state.

The reward model q̂ is logistic regression on the log (Open Bandit: one-hot user features and
position, per-item intercepts, the user–item affinity; a sequential log: per-item intercepts,
the history length, whether the item is in the history, the model's log-softmax score); DR
and switch-DR use it cross-fitted (K folds). Intervals are percentile bootstraps over the
log's rows with q̂ held fixed. Bad propensities (missing, 0, above 1) and other bad values
stop the run naming file, line (or row) and column; target mass on items the log never shows
is counted and reported (unlogged mass).

{settings}
examples:
  recrl ope --data ../shared/data/open-bandit-sample
  recrl ope --estimators ips dr --set switch_tau=50 --set folds=2 --no-mlflow
  recrl ope --log impressions.parquet --policy-model runs/sasrec-20261204-101500
  recrl ope --log impressions.csv --policy-model models:/rc15-ccql/1 --policy top_k --top-k 3
  mlflow ui --backend-store-uri sqlite:///mlruns.db     # experiment "recrl-ope"
"""

FLAGS = {"data": "data_path", "campaign": "campaign", "estimators": "estimators",
         "evaluations": "evaluations", "bootstrap": "n_bootstrap", "seed": "seed",
         "log": "log_path", "policy_model": "policy_model"}  # fmt: skip
"""Flag -> the `OPEConfig` field it sets."""
POLICY_FLAGS = ("policy", "temperature", "top_k")
"""`TargetPolicyConfig` fields with a flag of their own."""


def register(commands) -> None:
    """Add ``ope`` to the ``recrl`` subcommands."""
    from recrl.models.ope.policies import TargetPolicyConfig
    from recrl.pipelines.commands.flags import SETTINGS_KEYS, add_field_flags, add_settings_options
    from recrl.pipelines.ope.config import OPEConfig

    p = commands.add_parser(
        "ope",
        help="off-policy evaluation (IPS, SNIPS, DM, DR, switch-DR) of Open Bandit policies "
        "or of a trained SASRec model on a logged sequential feedback file",
        description=textwrap.dedent(
            """\
            Estimate the value (click rate) of a target policy from a log another policy
            collected, with each estimator and a bootstrap interval, next to the target's
            true value where it is known; print the table and log it to MLflow."""
        ),
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(p, OPEConfig, FLAGS)
    add_field_flags(p, TargetPolicyConfig, POLICY_FLAGS)
    add_settings_options(p, SETTINGS_KEYS.format(config="OPEConfig"))
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=run)


def epilog() -> str:
    from recrl.models.ope.estimators import ESTIMATORS
    from recrl.pipelines.commands.flags import settings_help
    from recrl.pipelines.ope.config import EVALUATIONS, OPEConfig

    def row(name: str, text: str) -> str:
        return textwrap.fill(text, 90, initial_indent=f"  {name:<15}", subsequent_indent=" " * 17)

    return _EPILOG.format(
        estimators="\n".join(row(name, spec.summary) for name, spec in ESTIMATORS.items()),
        evaluations="\n".join(row(name, text) for name, text in EVALUATIONS.items()),
        settings=settings_help(OPEConfig, without=(*FLAGS.values(), *POLICY_FLAGS)),
    )


def ope_config(args):
    """The `OPEConfig` of the parsed arguments (defaults, --config, --set, flags)."""
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.ope.config import OPEConfig
    from recrl.pipelines.settings import apply_settings

    settings = collect_settings(args)
    if args.no_mlflow:
        settings["tracking"] = False
    return apply_settings(OPEConfig(), settings)


def run(args) -> int:
    from recrl.pipelines.checks import check_input
    from recrl.pipelines.ope.job import format_table
    from recrl.pipelines.tracking import dashboard_command

    from recrl.api import ope

    config = ope_config(args)
    if config.sequential:
        check_input(config.log_path, "--log", kind="file")
    else:
        check_input(config.data_path, "--data")
    results = ope(config)
    print(format_table(results), end="")
    what = "mean rewards × 100" if config.sequential else "click rates in %"
    print(f"values are {what}, intervals at level {1 - config.alpha:g}")
    for result in results if config.sequential else ():
        left_out = ", ".join(f"{reason} {count}" for reason, count in result.excluded.items())
        print(f"{result.name}: {result.rows} rows (left out: {left_out}); the logging "
              f"policy's own value (mean logged reward): {result.log_value * 100:.3f}")  # fmt: skip
    if config.tracking:
        print(f"MLflow: {dashboard_command()}")
    return 0
