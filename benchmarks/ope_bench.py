"""Off-policy estimators (design.md §9) on a synthetic benchmark with known truth and on the
Open Bandit sample; prints the Markdown tables of docs/results.md "Off-policy evaluation".

    .venv/bin/python benchmarks/ope_bench.py --logs 100 \\
        --open-bandit ../shared/data/open-bandit-sample

Synthetic: ``--logs`` logs of one world (`recrl.envs.synthetic_log`), each estimator's bias
(mean of estimate − true value on that log's contexts), its standard error, RMSE and the
coverage of its 95 % bootstrap interval. Open Bandit: the BTS policy's value estimated from
the uniform-random log, the random policy's from the BTS log and the random policy's on its
own log, with 95 % intervals, against the on-policy click rates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from recrl.envs.synthetic_log import SyntheticLogConfig, synthetic_log
from recrl.models.ope import (
    ESTIMATORS,
    RewardFeatures,
    RewardModelConfig,
    effective_sample_size,
    importance_weights,
)
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.ope.job import estimate_all, format_table, run_ope

USER_FEATURES = [f"user_feature_{i}" for i in range(4)]
N_ITEMS, N_POSITIONS = 80, 3


def synthetic(args) -> None:
    config = SyntheticLogConfig(n=args.n)
    model = RewardModelConfig(interactions=True, folds=2, max_iter=50)
    errors = {name: [] for name in ESTIMATORS}
    covered = {name: [] for name in ESTIMATORS}
    truths, ess = [], []
    start = time.perf_counter()
    for seed in range(args.logs):
        log = synthetic_log(config, seed)
        f = log.feedback
        found = estimate_all(
            f, log.target, RewardFeatures(log.context), model, ESTIMATORS, tau=args.tau,
            n_bootstrap=args.synthetic_bootstrap, seed=seed,
        )  # fmt: skip
        truths.append(log.true_value)
        ess.append(effective_sample_size(importance_weights(f.actions, f.pscore, log.target)))
        for name, interval in found.items():
            errors[name].append(interval.value - log.true_value)
            covered[name].append(interval.low <= log.true_value <= interval.high)
    print(
        f"\nsynthetic: {args.logs} logs × {config.n} rows, {config.n_actions} actions, "
        f"d = {config.dim}; mean true value {np.mean(truths):.4f}; mean ESS of the weights "
        f"{np.mean(ess):.0f}; switch-DR tau = {args.tau}; {time.perf_counter() - start:.0f}s\n"
    )
    print("| estimator | bias | s.e. of bias | RMSE | 95 % interval coverage |")
    print("|---|---|---|---|---|")
    for name in ESTIMATORS:
        e = np.array(errors[name])
        print(
            f"| {name} | {e.mean():+.4f} | {e.std(ddof=1) / np.sqrt(len(e)):.4f} | "
            f"{np.sqrt((e**2).mean()):.4f} | {np.mean(covered[name]):.2f} |"
        )


def open_bandit(args) -> None:
    config = OPEConfig(
        data_path=str(args.open_bandit), n_bootstrap=args.bootstrap, switch_tau=args.tau,
        tracking=False,
    )  # fmt: skip
    print(
        f"\nOpen Bandit sample (campaign all): 95 % percentile bootstrap intervals "
        f"({args.bootstrap} resamples); truth = the on-policy mean click of the target's "
        f"own log; switch-DR tau = {args.tau}\n"
    )
    print(format_table(run_ope(config)))
    print("values are click rates in %.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=100, help="synthetic logs (default 100)")
    parser.add_argument("--n", type=int, default=1000, help="rows per synthetic log")
    parser.add_argument("--tau", type=float, default=20.0, help="switch-DR threshold")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (Open Bandit)")
    parser.add_argument("--synthetic-bootstrap", type=int, default=200)
    parser.add_argument("--open-bandit", type=Path, help="the Open Bandit sample folder")
    args = parser.parse_args()
    synthetic(args)
    if args.open_bandit is not None:
        open_bandit(args)


if __name__ == "__main__":
    main()
