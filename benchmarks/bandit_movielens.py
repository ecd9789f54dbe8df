"""Benchmark: cumulative CTR of the contextual-bandit policies on the MovieLens-100K
user-choice simulator (two-stage paper Table 4 setting; SPEC §6).

100 users, 2,000 rounds, 5 recommendations per round, several trials (seeds). The simulator
is an IPS-weighted logistic matrix factorisation fitted on the logged ratings (rating ≥ 4 is a
click), thresholded at the F1-best value on validation pairs drawn from the whole user × item
matrix (unlogged pairs are non-clicks: ≈ 4 % of pairs click) and flipped with probability 0.1
(``envs/user_choice.py``). Every policy reads the same online latent-factor representation
(``models/bandits/latent_factor.py``), refit on the shown items every ``--refit-interval``
rounds; the GLM parts of the UCB policies refit every round. Cumulative CTR is the paper's
Σ_t clicks_t / m (at most the number of rounds). Target (issue 5): cumulative CTR of
S-N-GALM-UCB and S-N-GBLM-UCB above N-Greedy and N-Dropout-UCB, above Random.

examples:
  python benchmarks/bandit_movielens.py --data ../shared/data/movielens-100k
  python benchmarks/bandit_movielens.py --data ../shared/data/movielens-100k --rounds 500 \\
      --seeds 0 --policies random n-greedy s-n-galm-ucb
  python benchmarks/bandit_movielens.py --data ../shared/data/movielens-100k --seeds 0 \\
      --encoder sasrec --refit-interval 100      # SASRec two-tower retrained every 100 rounds
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pipelines.bandit.config import BanditRunConfig  # noqa: E402
from pipelines.bandit.loop import run_bandit  # noqa: E402

logger = logging.getLogger("bandit_movielens")
POLICIES = (
    "oracle", "random", "n-greedy", "n-dropout-ucb", "n-glm-ucb", "s-n-galm-ucb", "s-n-gblm-ucb",
)  # fmt: skip


def run_all(args) -> dict[str, list]:
    results: dict[str, list] = {}
    for policy in args.policies:
        for seed in args.seeds:
            config = BanditRunConfig(
                policy=policy, env="ml-100k", data_path=str(args.data), n_users=args.users,
                slate_size=args.slate_size, rounds=args.rounds, seed=seed,
                refit_interval=args.refit_interval, log_interval=50, tracking=False,
                encoder=args.encoder,
            )  # fmt: skip
            result = run_bandit(config, progress=False)
            results.setdefault(policy, []).append(result)
            logger.info(
                "%s seed %d: %d clicks in %.1fs", policy, seed, result.rewards.sum(), result.seconds
            )
    return results


def summarise(results) -> list[dict]:
    rows = []
    for policy, runs in results.items():
        clicks = [float(r.rewards.sum()) for r in runs]
        # the paper's cumulative CTR: Σ_t (clicks_t / m), at most the number of rounds
        ctr_sums = [float(r.ctr.sum()) for r in runs]
        rows.append(
            {
                "policy": policy, "trials": len(runs),
                "cumulative_ctr": float(np.mean(ctr_sums)), "ctr_std": float(np.std(ctr_sums)),
                "cumulative_clicks": float(np.mean(clicks)), "std": float(np.std(clicks)),
                "ctr": float(np.mean([r.ctr.mean() for r in runs])),
                "cumulative_regret": float(np.mean([r.cumulative_regret[-1] for r in runs])),
                "seconds_per_run": float(np.mean([r.seconds for r in runs])),
            }
        )  # fmt: skip
    return rows


def plot(results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for policy, runs in results.items():
        curves = np.stack([np.cumsum(r.rewards) for r in runs])
        ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), label=policy, lw=1.4)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative clicks")
    ax.set_title("MovieLens-100K user-choice simulator")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="MovieLens-100K folder")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trials")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--slate-size", type=int, default=5)
    parser.add_argument("--refit-interval", type=int, default=1, help="rounds between refits")
    parser.add_argument(
        "--encoder", choices=("latent-factor", "sasrec"), default="latent-factor",
        help="representation the policies read (sasrec: use --refit-interval 100)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run_all(args)
    rows = summarise(results)
    print(
        f"\n{'policy':15} {'cumulative CTR':>17} {'cumulative clicks':>20} {'CTR':>6} "
        f"{'regret':>8} {'s/run':>6}"
    )
    for row in rows:
        print(
            f"{row['policy']:15} {row['cumulative_ctr']:8.1f} ± {row['ctr_std']:5.1f} "
            f"{row['cumulative_clicks']:11.1f} ± {row['std']:6.1f} "
            f"{row['ctr']:6.3f} {row['cumulative_regret']:8.1f} {row['seconds_per_run']:6.1f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (
        "bandit_movielens"
        if args.encoder == "latent-factor"
        else f"bandit_movielens_{args.encoder}"
    )
    figure = plot(results, args.out / f"{stem}.png")
    summary = args.out / f"{stem}.json"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    summary.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    print(f"\nplot: {figure}\nsummary: {summary}")
    if not args.no_mlflow:
        from pipelines.tracking import Tracker

        with Tracker(experiment="recrl-bandit-bench") as tracker:
            tracker.start("bandit_movielens", params=settings)
            tracker.log_metrics(
                {f"movielens/{r['policy']}/cumulative_ctr": r["cumulative_ctr"] for r in rows},
                step=0,
            )
            tracker.log_artifact(summary)
            tracker.log_artifact(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
