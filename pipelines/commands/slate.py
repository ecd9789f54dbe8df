"""``recrl slate``: slate policies against the simulated user (Chen et al. 2019, §5-6.2)."""

from __future__ import annotations

import argparse

from recrl.pipelines.slate.policy_names import POLICIES

_EPILOG = """\
policies:
  cdqn     cascading Q-networks on the learned reward (GAN-CDQN)
  rwd1     cascading Q-networks on +1 click / -1 no click (GAN-RWD1)
  gdqn     additive Q(s, A) = sum_j q(s, a_j) on the learned reward (GAN-GDQN)
  greedy   the k items of highest utility under the user model (GAN-Greedy)
  random   k random candidates
  offline  cascading Q-networks fitted on the logged page views alone (DQN-Off)
cdqn, rwd1 and gdqn train with RLlib (DQN algorithm, episode replay, target network).

metrics (paper Table 3), on the test environment: reward = mean per-step learned reward of
a simulated user, averaged over users; ctr = clicks / page views.

examples:
  recrl usermodel fit --data data/ml100k-sets --out runs/um-train
  recrl usermodel fit --data data/ml100k-sets --fit-on test --out runs/um-test
  recrl slate --policy cdqn --k 5 --data data/ml100k-sets \\
      --user-model runs/um-train/user_model.pt --test-user-model runs/um-test/user_model.pt \\
      --seeds 0 1 2 --episodes 1000 --steps 20000 --out runs/slate
"""


def register(commands) -> None:
    """Add ``slate`` to the ``recrl`` subcommands."""
    p = commands.add_parser(
        "slate",
        help="train and evaluate a slate policy (cascading DQN, greedy, random) on a user model",
        description="Train a k-item slate policy against the simulated user of a fitted user "
        "model and report reward and CTR on the test users' environment.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", choices=POLICIES, default="cdqn")
    p.add_argument("--k", type=int, default=5, help="slate size (5)")
    p.add_argument("--data", required=True, help="display-set folder")
    p.add_argument("--user-model", required=True, help="user_model.pt to train against")
    p.add_argument("--test-user-model", help="user_model.pt fitted on test users (evaluation)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (0)")
    p.add_argument("--episodes", type=int, default=1000,
                   help="simulated test users (1000); 0: each test user once")  # fmt: skip
    p.add_argument("--episode-length", type=int, default=10, help="page views per user (10)")
    p.add_argument("--max-pool", type=int, default=512, help="candidates per user (512)")
    p.add_argument("--steps", type=int, default=5000,
                   help="training env steps (offline: updates) (5000)")  # fmt: skip
    p.add_argument("--warmup-steps", type=int,
                   help="random-slate steps before updates (min(500, steps / 10))")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="transitions per update (64)")
    p.add_argument("--gamma", type=float, default=0.5, help="discount (0.5)")
    p.add_argument("--eval-interval", type=int, default=0,
                   help="also evaluate every N training env steps: the learning curve in "
                   "MLflow (0: at the end only)")  # fmt: skip
    p.add_argument("--out", default="runs/slate", help="folder for CSV and PNG (runs/slate)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=run)


def run(args) -> int:
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.commands.usermodel import _check_display_sets
    from recrl.pipelines.settings import refused
    from recrl.pipelines.slate.config import CDQNConfig
    from recrl.pipelines.slate.job import SlateJob, run_slate_job

    warmup = min(500, args.steps // 10) if args.warmup_steps is None else args.warmup_steps
    with refused():
        job = SlateJob(
            data=args.data, user_model=args.user_model, test_user_model=args.test_user_model,
            policy=args.policy, k=args.k, episodes=args.episodes or None,
            episode_length=args.episode_length, seeds=tuple(args.seeds), out_dir=args.out,
            max_pool=args.max_pool, tracking=not args.no_mlflow,
            eval_interval=args.eval_interval,
            cdqn=CDQNConfig(env_steps=args.steps, gamma=args.gamma, batch_size=args.batch_size,
                            warmup_steps=warmup),
        )  # fmt: skip
    _check_display_sets(args.data)
    check_input(args.user_model, "--user-model", kind="file")
    if args.test_user_model:
        check_input(args.test_user_model, "--test-user-model", kind="file")
    check_output_dir(args.out, "--out")
    result = run_slate_job(job)
    s = result["summary"]
    users = args.episodes or "all test"
    print(f"{args.policy} k={args.k}, {len(args.seeds)} seed(s), {users} users each: "
          f"reward {s['reward_mean']:.3f} ± {s['reward_std']:.3f}, "
          f"ctr {s['ctr_mean']:.3f} ± {s['ctr_std']:.3f}")  # fmt: skip
    print("wrote " + ", ".join(result["files"]))
    return 0
