"""``recrl bandit``: one online run of an exploration policy against a simulator (design.md §6)."""

from __future__ import annotations

import argparse
import csv
import logging
import textwrap
from pathlib import Path

logger = logging.getLogger("recrl")

_EPILOG = """\
policies (--policy), each with the keys of its config and their defaults (--set KEY=VALUE):
{policies}
{shadowed}2-* policies score topics, build one topic group per slot (>= min_group_items items),
then pick the best item of each group; they need topics: --env ml-100k (first genre) or
generated (category).

environments (--env):
{environments}

back ends (--backend):
  loop    one process, the sequential protocol (default)
  rllib   RLlib new API stack: EnvRunners act with a BanditRLModule copy, the Learner owns
          the statistics and refits, weights synced after every update; --set
          rounds_per_update=R batches R rounds per update, num_env_runners=N adds remote
          EnvRunners. With R = 1 and no remote runner it picks the loop's slates.

representation the policies read (--set encoder=...), refit every refit_interval rounds on
the rows feedback_rows names; its settings are listed below:
{representations}

{settings}

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

FLAGS = {
    "policy": "policy", "env": "env", "data": "data_path", "backend": "backend",
    "users": "n_users", "rounds": "rounds", "slate_size": "slate_size", "seed": "seed",
}  # fmt: skip
"""Flag (``--slate-size``) -> the `BanditRunConfig` field it sets."""

ENCODERS = {
    "latent-factor": ("representation", "ridge ALS r ≈ θ_uᵀμ_i (the default)"),
    "sasrec": ("sasrec", "the SASRec encoder over the user's last chosen items, item table tied"),
}
"""``encoder`` -> the `BanditRunConfig` field holding its settings, and what it is."""


def register(commands) -> None:
    """Add ``bandit`` to the ``recrl`` subcommands."""
    from recrl.pipelines.bandit.config import BanditRunConfig
    from recrl.pipelines.commands.flags import add_field_flags, add_settings_options

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
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(p, BanditRunConfig, FLAGS)
    add_settings_options(
        p, "a flag's METAVAR in lower case, or a setting or a policy's key listed below"
    )
    p.add_argument("--run-dir", type=Path, help="folder for the per-round CSV (runs/bandit/NAME)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def epilog() -> str:
    """The help's epilog, its lists read from the registries (`POLICIES`, `ENVIRONMENTS`)
    and the configs' fields: a new policy, environment or setting shows up by itself."""
    from recrl.models.bandits.registry import POLICIES
    from recrl.pipelines.bandit.config import ENVIRONMENTS, REFERENCE_POLICIES, BanditRunConfig
    from recrl.pipelines.commands.flags import settings_help
    from recrl.pipelines.settings import field_types, setting_paths

    run_paths = setting_paths(BanditRunConfig)
    policies, shadowed = [], {}
    for name, spec in POLICIES.items():
        own = field_types(spec.config_class) if spec.config_class is not None else {}
        keys = [k for k in own if k not in spec.preset and k not in run_paths]
        # a policy key named like a run field is the run's (BanditRunConfig's docstring);
        # the run's seed seeds the policy too, so only the others need saying
        for key in own:
            if key in run_paths and key not in spec.preset and key != "seed":
                shadowed.setdefault(key, []).append(name)
        keys_text = f"; keys: {_defaults(spec.config_class, keys)}" if keys else ""
        policies.append(_row(name, spec.summary + keys_text))
    policies += [_row(name, summary) for name, summary in REFERENCE_POLICIES.items()]
    notes = "".join(
        textwrap.fill(
            f"{key} ({', '.join(names)}): --set {key}=... sets {'.'.join(run_paths[key])}; "
            f"the policy's own is --set 'policy_settings={{{key}: ...}}'",
            90, subsequent_indent="  ",
        ) + "\n"
        for key, names in shadowed.items()
    )  # fmt: skip
    return _EPILOG.format(
        policies="\n".join(policies),
        shadowed=notes,
        environments="\n".join(_row(name, text) for name, text in ENVIRONMENTS.items()),
        representations="\n".join(
            _row(
                name, f"{text}; keys: {', '.join(field_types(field_types(BanditRunConfig)[field]))}"
            )
            for name, (field, text) in ENCODERS.items()
        ),
        settings=settings_help(BanditRunConfig, without=FLAGS.values()).rstrip("\n"),
    )


def _row(name: str, text: str) -> str:
    """``name`` and ``text`` as a two-column help row wrapped at 90 characters."""
    return textwrap.fill(text, 90, initial_indent=f"  {name:<16}", subsequent_indent=" " * 18)


def _defaults(cls: type, names) -> str:
    """``name=default, ...`` of the fields ``names`` of ``cls``."""
    from recrl.pipelines.settings import field_default

    return ", ".join(f"{name}={field_default(cls, name)}" for name in names)


def bandit_config(args):
    """The `BanditRunConfig` of the parsed arguments: its defaults, then the --config file,
    --set and the flags given (`collect_settings`); keys that name no run or representation
    field are the policy's."""
    from recrl.pipelines.bandit.config import BanditRunConfig
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.settings import apply_settings

    settings = collect_settings(args)
    if args.no_mlflow:
        settings["tracking"] = False
    return apply_settings(BanditRunConfig(), settings, rest_to="policy_settings")


def run(args) -> int:
    from recrl.pipelines.bandit.job import run_bandit
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.tracking import NullTracker, Tracker, dashboard_command

    config = bandit_config(args)
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
        print(f"MLflow: {dashboard_command(experiment_id=tracker.experiment_id)}")
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
