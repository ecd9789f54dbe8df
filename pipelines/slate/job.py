"""`recrl slate`: train (where it applies) and evaluate a slate policy against simulated users.

Policies: ``cdqn`` (cascading DQN on the learned reward, GAN-CDQN), ``rwd1`` (the same on ±1
rewards, GAN-RWD1), ``gdqn`` (additive Q, GAN-GDQN) — all three trained with RLlib
(`recrl.pipelines.slate.training`) —, ``offline`` (DQN-Off: the cascading Q-networks
fitted on the training users' logged page views alone, `recrl.pipelines.slate.offline`),
``greedy`` (top-k by the user model's utility, GAN-Greedy) and ``random``. Training uses the
environment of ``user_model`` on the train users' page views; evaluation (paper Table 3:
mean reward per step per user, CTR) uses ``test_user_model`` on the test users' page views —
the test environment, fitted on test users only (``recrl usermodel fit --fit-on test``).
Results: ``slate_<policy>_k<k>.csv`` and a PNG in ``out_dir``, and an MLflow run
(``slate/reward``, ``slate/ctr``, ``slate/train_*``). The job's settings are a `SlateJob`
(`recrl.pipelines.slate.config`, built from flat settings by ``slate_job``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.slate.policies import GreedyUserModelPolicy, RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel, load_user_model
from recrl.models.user_model.data import DisplaySetArrays
from recrl.pipelines.atomic_output import atomic_writes
from recrl.pipelines.display_sets.records import load_display_sets
from recrl.pipelines.slate.config import SlateJob
from recrl.pipelines.slate.evaluation import evaluate_policy, item_feature_table
from recrl.pipelines.slate.offline import train_offline_slate_q
from recrl.pipelines.slate.training import ModuleSlatePolicy, train_slate_q
from recrl.pipelines.tracking import NullTracker, Tracker

logger = logging.getLogger(__name__)


def _policy(job: SlateJob, loaded: LoadedUserModel, views: DisplaySetArrays,
            env_config: UserModelEnvConfig, seed: int, log, on_eval=None):  # fmt: skip
    """The policy of ``job`` for one seed, trained on the training users when it learns."""
    if job.policy == "random":
        return RandomSlatePolicy(job.k, seed=seed)
    if job.policy == "greedy":
        return GreedyUserModelPolicy(loaded.model, job.k)
    config = dataclasses.replace(
        job.cdqn, seed=seed,
        reward="pm1" if job.policy == "rwd1" else "learned",
        q_form="additive" if job.policy == "gdqn" else "cascading",
    )  # fmt: skip
    progress = logger.isEnabledFor(logging.INFO)
    if job.policy == "offline":
        features = item_feature_table(loaded.model).numpy()
        module = train_offline_slate_q(views, loaded, features, job.k, config, on_log=log,
                                       progress=progress)  # fmt: skip
    else:
        module = train_slate_q(lambda: UserModelEnv(loaded, views, env_config), config,
                               on_log=log, progress=progress, eval_interval=job.eval_interval,
                               on_eval=on_eval)  # fmt: skip
    return ModuleSlatePolicy(module, state_model=loaded.model)


def run_slate_seed(
    job: SlateJob,
    seed: int,
    train_model: LoadedUserModel,
    test_model: LoadedUserModel,
    dataset,
    *,
    on_train_log: Callable[[int, dict[str, float]], None] | None = None,
    on_result: Callable[[int, dict[str, float]], None] | None = None,
    on_policy: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Train (where the policy learns) and evaluate ``job``'s policy for one seed; returns
    the test environment's result. ``on_train_log(env_steps, diagnostics)`` gets the
    learner's diagnostics per iteration, ``on_result(step, result)`` every evaluation: each
    ``job.eval_interval`` env steps during training and the final one at `final_step`;
    ``on_policy(policy)`` the policy once trained."""
    env_config = UserModelEnvConfig(slate_size=job.k, episode_length=job.episode_length,
                                    max_pool=job.max_pool, seed=seed,
                                    quit_after=job.quit_after,
                                    no_click_utility=job.no_click_utility)  # fmt: skip
    test_env = UserModelEnv(test_model, dataset.splits["test"], env_config)

    def evaluate_module(step: int, module) -> None:
        policy = ModuleSlatePolicy(module, state_model=train_model.model)
        result = evaluate_policy(test_env, policy, job.episodes, seed=10_000 + seed)
        if on_result is not None:
            on_result(step, result)

    policy = _policy(job, train_model, dataset.splits["train"], env_config, seed,
                     on_train_log, evaluate_module)  # fmt: skip
    if on_policy is not None:
        on_policy(policy)
    result = evaluate_policy(test_env, policy, job.episodes, seed=10_000 + seed)
    if on_result is not None:
        on_result(job.final_step, result)
    return result


@dataclass(frozen=True)
class SlateResult:
    """What a slate job produced."""

    rows: list[dict[str, Any]]
    """One row per seed: policy, k, seed and the Table 3 metrics (``reward``, ``ctr``)."""
    summary: dict[str, float]
    """``reward_mean``, ``reward_std``, ``ctr_mean``, ``ctr_std``, ``visit_length_mean``,
    ``visit_length_std`` over the seeds."""
    files: list[str]
    """The CSV and PNG written to ``out_dir``."""


def run_slate_job(job: SlateJob) -> SlateResult:
    """Train/evaluate per seed; returns per-seed rows and the mean ± std."""
    dataset = load_display_sets(job.data)
    train_model = load_user_model(job.user_model)
    if job.test_user_model is None:
        logger.warning("no --test-user-model: evaluating on the training user model")
    test_model = load_user_model(job.test_user_model or job.user_model)
    tracker = Tracker("recrl-slate") if job.tracking else NullTracker()
    rows = []
    served: list[ModuleSlatePolicy] = []  # the first seed's trained policy, to log as a model
    with tracker:
        tracker.start(f"slate-{job.policy}-k{job.k}", params=job.as_params())
        for seed in job.seeds:

            def log(step: int, metrics: dict[str, float], seed=seed) -> None:
                names = {k: f"slate/train_{k.replace('/', '_')}/seed{seed}" for k in metrics}
                tracker.log_metrics({names[k]: v for k, v in metrics.items()}, step)

            def curve(step: int, result: dict[str, float], seed=seed) -> None:
                tracker.log_metrics({f"slate/curve_{m}/seed{seed}": result[m]
                                     for m in ("reward", "ctr")}, step)  # fmt: skip

            keep = served.append if job.tracking and not served else None
            result = run_slate_seed(job, seed, train_model, test_model, dataset,
                                    on_train_log=log, on_result=curve, on_policy=keep)  # fmt: skip
            rows.append({"policy": job.policy, "k": job.k, "seed": seed, **result})
            tracker.log_metrics({f"slate/{k}": v for k, v in result.items()}, step=seed)
            logger.info("%s k=%d seed %d: %s", job.policy, job.k, seed, result)
        summary = {
            f"{m}_{stat}": fn([r[m] for r in rows])
            for m in ("reward", "ctr", "visit_length")
            for stat, fn in (("mean", statistics.fmean),
                             ("std", lambda v: statistics.stdev(v) if len(v) > 1 else 0.0))
        }  # fmt: skip
        tracker.log_metrics({f"slate/{k}": v for k, v in summary.items()}, step=len(rows))
        paths = _write_outputs(Path(job.out_dir), rows, job)
        for path in paths:
            tracker.log_artifact(path)
        if served and isinstance(served[0], ModuleSlatePolicy):  # greedy, random: nothing learned
            from recrl.pipelines.slate.serving import log_slate_policy

            log_slate_policy(tracker, served[0], job, seed=job.seeds[0])
    return SlateResult(rows=rows, summary=summary, files=[str(p) for p in paths])


def _write_outputs(out: Path, rows: list[dict], job: SlateJob) -> list[Path]:
    """``slate_<policy>_k<k>.csv`` and ``.png`` in ``out``, both written aside and renamed
    in (`atomic_writes`): an interrupted write leaves the previous pair as it was. Other
    files in ``out`` (other policies' results) are left alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    stem = f"slate_{job.policy}_k{job.k}"

    def write_table(path: Path) -> None:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    figure, axes = plt.subplots(1, 2, figsize=(6, 2.6))
    try:
        for axis, metric in zip(axes, ("reward", "ctr"), strict=True):
            axis.bar([str(r["seed"]) for r in rows], [r[metric] for r in rows], color="tab:blue")
            axis.set_xlabel("seed")
            axis.set_title(f"{job.policy}, k={job.k}: {metric}")
        figure.tight_layout()
        return atomic_writes(
            {
                out / f"{stem}.csv": write_table,
                out / f"{stem}.png": lambda path: figure.savefig(path, dpi=100, format="png"),
            }
        )
    finally:
        plt.close(figure)
