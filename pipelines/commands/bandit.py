"""``recrl bandit``: one online run of an exploration policy against a simulator (design.md §6)."""

from __future__ import annotations

import argparse
import csv
import logging
import textwrap
from pathlib import Path

logger = logging.getLogger("recrl")

_EPILOG = """\
policies (models/bandits; --set KEY=VALUE sets a field of the policy's config):
  random          uniform slates                    greedy       relevance only (μᵀθ)
  ren             μᵀθ + λ_d·√(μᵀ(I+DᵀD)⁻¹μ) + λ_u/√(1+n)    keys: lambda_d (0.3), lambda_u
                  (default √10·λ_d), history (recommended|context), history_window
  ren-1,2         REN without the uncertainty term  ren-1,3      REN without the diversity term
  linucb          per-user ridge + β‖x‖_{M⁻¹}       glm-ucb      per-user logistic + β‖x‖_{M⁻¹}
  n-glm-ucb       glm-ucb on the learned embeddings n-greedy     sigmoid(μᵀθ)
  n-dropout-ucb   mean + β·std of 5 dropout passes  (keys: beta, passes, dropout)
  s-n-galm-ucb    shared additive GLM + β(γ‖x‖+(1−γ)‖z‖)   keys: beta, gamma, lr
  s-n-gblm-ucb    shared bilinear GLM + β‖vec(xzᵀ)‖_{W⁻¹}  keys: beta, lr, covariance
  2-n-greedy, 2-n-glm-ucb, 2-s-n-galm-ucb, 2-s-n-gblm-ucb
                  two-stage topic → item (DynaTopicRec): the family scores topics, builds
                  one topic group per slot (≥ min_group_items items), then the best item
                  of each group; keys: min_group_items (50), budget (none), beta.
                  Needs topics: --env ml-100k (first genre) or generated (category)
  oracle          the simulator's best slate (reference; --backend loop only)

environments:
  syn-s, syn-m, syn-l  28 / 280 / 1,400 items, 15 users, 8-dim hidden latents; the user takes
                       the best slate item and earns θ*ᵀx* (REN paper, design.md §6)
  ml-100k              user-choice simulator fitted on MovieLens-100K (--data): IPS-weighted
                       logistic MF, click = p̂ ≥ F1-best threshold (validation pairs from the
                       whole user × item matrix), flipped with prob. 0.1; reward = clicks
                       in the slate (two-stage paper; use --slate-size 5)
  generated            the same simulator fitted on the clicks of `recrl generate --out DIR`
                       (--data DIR; one sampled non-click per click in training)

back ends (--backend):
  loop    one process, the sequential protocol (default)
  rllib   RLlib new API stack: EnvRunners act with a BanditRLModule copy, the Learner owns
          the statistics and refits, weights synced after every update; --set
          rounds_per_update=R batches R rounds per update, num_env_runners=N adds remote
          EnvRunners. With R = 1 and no remote runner it picks the loop's slates.

representation the policies read (--set encoder=...):
  latent-factor  ridge ALS r ≈ θ_uᵀμ_i refit every refit_interval rounds (default; keys
                 embedding_dim, l2, sweeps, init_std)
  sasrec         the SASRec encoder over the user's last chosen items, item table tied;
                 retrained every refit_interval rounds (the two-stage paper: 100); keys
                 hidden_size, max_len, num_blocks, num_heads, encoder_dropout, encoder_lr,
                 steps_per_refit, batch_size

run settings accepted by --set as well: window, log_interval, n_users, refit_interval
(rounds between refits of the representation; default 1 on SYN as in the REN paper, 100 on
ml-100k and generated as in the two-stage paper), feedback_rows (auto|chosen|shown: what the
representation learns from).

metrics per round (MLflow, every --set log_interval rounds): bandit/reward,
bandit/reward_window (rolling 100), bandit/ctr, bandit/cumulative_reward,
bandit/cumulative_regret (against the oracle), bandit/oracle_reward.

examples:
  recrl bandit --policy ren --env syn-m --rounds 2000 --set lambda_d=0.01
  recrl bandit --policy greedy --env syn-l --rounds 3000 --seed 1
  recrl bandit --policy s-n-galm-ucb --env ml-100k --data ../shared/data/movielens-100k \\
      --slate-size 5 --users 100 --rounds 2000
  recrl bandit --policy s-n-gblm-ucb --env syn-s --set beta=0.5 --set covariance=diagonal
  recrl bandit --policy ren --env syn-m --backend rllib --set rounds_per_update=10
  recrl bandit --policy 2-s-n-galm-ucb --env generated --data data/generated --slate-size 5
  recrl bandit --policy n-dropout-ucb --env ml-100k --data ../shared/data/movielens-100k \\
      --slate-size 5 --set encoder=sasrec
  mlflow ui --backend-store-uri sqlite:///mlruns.db     # experiment "recrl-bandit"
"""


def register(commands) -> None:
    """Add ``bandit`` to the ``recrl`` subcommands."""
    p = commands.add_parser(
        "bandit",
        help="run an exploration bandit policy (REN, UCB family) against a simulator",
        description=textwrap.dedent(
            """\
            Run ROUNDS rounds: each round the simulator draws a user, the policy scores
            every item from a latent-factor model refit on the feedback so far and
            recommends a slate, the user takes one item, and the policy and the model
            learn from it. Prints the last-window reward against the oracle and the
            cumulative regret; logs every round's metrics to MLflow."""
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", default="ren", help="policy name (ren)")
    p.add_argument(
        "--env", default="syn-s", help="syn-s, syn-m, syn-l, ml-100k or generated (syn-s)"
    )
    p.add_argument(
        "--data",
        help="logged data of a fitted simulator (ml-100k: u.data folder; generated: the "
        "`recrl generate --out` folder)",
    )
    p.add_argument("--backend", choices=("loop", "rllib"), default="loop", help="run loop (loop)")
    p.add_argument("--users", type=int, default=100, help="panel of a fitted simulator (100)")
    p.add_argument("--rounds", type=int, default=2000, help="interaction rounds (2000)")
    p.add_argument("--slate-size", type=int, default=4, help="items per slate (4)")
    p.add_argument("--seed", type=int, default=0, help="seed of world, rounds, model (0)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="policy or run setting (repeatable), e.g. lambda_d=0.01",
    )
    p.add_argument("--run-dir", type=Path, help="folder for the per-round CSV (runs/bandit/NAME)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args) -> int:
    from recrl.pipelines.bandit.config import BanditRunConfig
    from recrl.pipelines.bandit.job import run_bandit
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.commands.overrides import parse_overrides
    from recrl.pipelines.settings import refused
    from recrl.pipelines.tracking import NullTracker, Tracker, dashboard_command

    settings = parse_overrides(args.overrides)
    with refused():
        config = BanditRunConfig(
            policy=args.policy, env=args.env, rounds=args.rounds, slate_size=args.slate_size,
            seed=args.seed, tracking=not args.no_mlflow, data_path=args.data, n_users=args.users,
            backend=args.backend,
        ).with_settings(settings)  # fmt: skip
    if config.data_path:
        check_input(config.data_path, "--data")
    name = f"{config.policy}-{config.env}-seed{config.seed}"
    run_dir = check_output_dir(args.run_dir or Path("runs") / "bandit" / name, "--run-dir")
    tracker = Tracker(experiment=config.experiment) if config.tracking else NullTracker()
    with tracker:
        tracker.start(name, params=config.as_params(), tags={"policy": config.policy})
        result = run_bandit(config, tracker, progress=not args.no_progress)
        series = write_series(result, run_dir / "rounds.csv")
        if config.tracking:
            tracker.log_artifact(series)
    print(
        f"{config.policy} on {config.env}, {config.rounds} rounds, seed {config.seed}: "
        f"last-{min(config.window, config.rounds)} reward {result.final_window_reward:.3f} "
        f"(oracle {result.final_window_oracle:.3f}, "
        f"{result.final_window_reward / result.final_window_oracle:.1%}), "
        f"cumulative regret {result.cumulative_regret[-1]:.1f}, {result.seconds:.1f}s"
    )
    print(f"per-round series: {series}")
    if config.tracking:
        print(f"MLflow: {dashboard_command()}")
    return 0


def write_series(result, path: Path) -> Path:
    """One CSV row per round: reward, oracle reward, CTR, cumulative regret. Written aside
    and renamed in (`atomic_write`): an interrupted write leaves the previous file whole."""
    from recrl.pipelines.atomic_output import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    regret = result.cumulative_regret

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["round", "reward", "oracle_reward", "ctr", "cumulative_regret"])
            for t in range(len(result.rewards)):
                writer.writerow(
                    [t + 1, result.rewards[t], result.oracle_rewards[t], result.ctr[t], regret[t]]
                )

    return atomic_write(path, write)
