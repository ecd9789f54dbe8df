"""``recrl slate``: slate policies against the simulated user (Chen et al. 2019, §5-6.2)."""

from __future__ import annotations

import argparse

_EPILOG = """\
policies (--policy):
{policies}
cdqn, rwd1 and gdqn train with RLlib (DQN algorithm, episode replay, target network).

{settings}
The policy decides the training reward and the Q form, and each of --seeds seeds its own
training: {decided} are not settings.

metrics (paper Table 3), on the test environment: reward = mean per-step learned reward of
a simulated user, averaged over users; ctr = clicks / page views.

examples:
  recrl usermodel fit --data data/ml100k-sets --out runs/um-train
  recrl usermodel fit --data data/ml100k-sets --fit-on test --out runs/um-test
  recrl slate --policy cdqn --k 5 --data data/ml100k-sets \\
      --user-model runs/um-train/user_model.pt --test-user-model runs/um-test/user_model.pt \\
      --seeds 0 1 2 --episodes 1000 --steps 20000 --out runs/slate
"""

JOB_FLAGS = {
    "policy": "policy", "k": "k", "data": "data", "user_model": "user_model",
    "test_user_model": "test_user_model", "seeds": "seeds", "episodes": "episodes",
    "episode_length": "episode_length", "max_pool": "max_pool",
}  # fmt: skip
"""Flag (``--user-model``) -> the `SlateJob` field it sets."""
TRAINING_FLAGS = {"steps": "env_steps", "warmup_steps": "warmup_steps",
                  "batch_size": "batch_size", "gamma": "gamma"}  # fmt: skip
"""Flag -> the `CDQNConfig` field it sets."""
OUTPUT_FLAGS = {"eval_interval": "eval_interval", "out": "out_dir", "register": "register_model"}
"""Flag -> the `SlateJob` field it sets (after the training flags in the help)."""


def register(commands) -> None:
    """Add ``slate`` to the ``recrl`` subcommands."""
    from recrl.pipelines.commands.flags import (
        SETTINGS_KEYS,
        add_field_flags,
        add_settings_options,
    )
    from recrl.pipelines.slate.config import CDQNConfig, SlateJob

    p = commands.add_parser(
        "slate",
        help="train and evaluate a slate policy (cascading DQN, greedy, random) on a user model",
        description="Train a k-item slate policy against the simulated user of a fitted user "
        "model and report reward and CTR on the test users' environment.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(p, SlateJob, JOB_FLAGS)
    add_field_flags(p, CDQNConfig, TRAINING_FLAGS)
    add_field_flags(p, SlateJob, OUTPUT_FLAGS)
    add_settings_options(p, SETTINGS_KEYS.format(config="SlateJob and CDQNConfig"))
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=run)


def epilog() -> str:
    """The help's epilog, its lists read from `POLICIES` and the configs' fields."""
    from recrl.pipelines.commands.flags import settings_help
    from recrl.pipelines.slate.config import JOB_DECIDES, SlateJob
    from recrl.pipelines.slate.policy_names import POLICIES

    flagged = {*JOB_FLAGS.values(), *TRAINING_FLAGS.values(), *OUTPUT_FLAGS.values()}
    return _EPILOG.format(
        policies="\n".join(f"  {name:<8} {summary}" for name, summary in POLICIES.items()),
        settings=settings_help(SlateJob, without=(*flagged, *JOB_DECIDES)),
        decided=", ".join(JOB_DECIDES),
    )


def slate_config(args):
    """The `SlateJob` of the parsed arguments: the --config file, --set and the flags given
    (`collect_settings`) over the job's defaults."""
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.slate.config import slate_job

    settings = collect_settings(args)
    if args.no_mlflow:
        settings["tracking"] = False
    return slate_job(settings)


def run(args) -> int:
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.commands.usermodel import _check_display_sets
    from recrl.pipelines.slate.job import run_slate_job

    job = slate_config(args)
    _check_display_sets(job.data)
    check_input(job.user_model, "--user-model", kind="file")
    if job.test_user_model:
        check_input(job.test_user_model, "--test-user-model", kind="file")
    check_output_dir(job.out_dir, "--out")
    result = run_slate_job(job)
    s = result.summary
    users = job.episodes or "all test"
    print(f"{job.policy} k={job.k}, {len(job.seeds)} seed(s), {users} users each: "
          f"reward {s['reward_mean']:.3f} ± {s['reward_std']:.3f}, "
          f"ctr {s['ctr_mean']:.3f} ± {s['ctr_std']:.3f}")  # fmt: skip
    print("wrote " + ", ".join(result.files))
    return 0
