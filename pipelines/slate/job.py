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
(``slate/reward``, ``slate/ctr``, ``slate/train_*``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.slate.policies import GreedyUserModelPolicy, RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel, load_user_model
from recrl.models.user_model.data import DisplaySetArrays
from recrl.pipelines.atomic_output import atomic_writes
from recrl.pipelines.display_sets.records import load_display_sets
from recrl.pipelines.slate.config import CDQNConfig
from recrl.pipelines.slate.evaluation import evaluate_policy, item_feature_table
from recrl.pipelines.slate.offline import train_offline_slate_q
from recrl.pipelines.slate.policy_names import POLICIES
from recrl.pipelines.slate.training import ModuleSlatePolicy, train_slate_q
from recrl.pipelines.tracking import NullTracker, Tracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlateJob:
    """One policy, k, seeds; see the module docstring."""

    data: str
    """Display-set folder (its train/test page views seed the simulated users)."""
    user_model: str
    """user_model.pt of the training environment."""
    policy: str = "cdqn"
    """cdqn, rwd1, gdqn, greedy, random or offline (see `POLICIES`)."""
    out_dir: str = "runs/slate"
    """Folder for the CSV and the PNG."""
    test_user_model: str | None = None
    """user_model.pt of the test environment (None: ``user_model``, with a warning)."""
    k: int = 5
    """Slate size."""
    episodes: int | None = 1000
    """Simulated test users per seed (paper: 1,000); None: each test user once."""
    episode_length: int = 10
    """Page views per simulated user."""
    max_pool: int = 512
    """Candidate pool per simulated user (items shown to them in the log, subsampled)."""
    seeds: tuple[int, ...] = (0,)
    """One training + evaluation per seed."""
    cdqn: CDQNConfig = field(default_factory=CDQNConfig)
    """Training settings of cdqn / rwd1 / gdqn / offline (offline: env_steps = updates)."""
    tracking: bool = True
    """Log to MLflow."""
    eval_interval: int = 0
    """cdqn / rwd1 / gdqn: also evaluate on the test users every this many training env
    steps (the learning curve); 0: only at the end."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}: {self.policy!r}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0, got {self.eval_interval}")

    @classmethod
    def from_settings(cls, data: str, settings: dict[str, Any]) -> SlateJob:
        """A job from flat settings (a sweep's ``fixed`` + sampled values): `CDQNConfig`
        fields (``gamma``, ``lr``, ``epsilon_end``, ``env_steps``...) go to ``cdqn``,
        ``seed`` makes ``seeds`` one seed; unknown keys raise ValueError naming the known."""
        settings = dict(settings)
        # the policy decides the reward and the Q form; the seed comes per trial
        cdqn_fields = {f.name for f in dataclasses.fields(CDQNConfig)} - {
            "seed", "reward", "q_form"}  # fmt: skip
        own = {f.name for f in dataclasses.fields(cls)} - {"cdqn", "seeds", "data"}
        unknown = set(settings) - cdqn_fields - own - {"seed"}
        if unknown:
            known = sorted(cdqn_fields | own | {"seed"})
            raise ValueError(f"unknown slate setting(s) {sorted(unknown)}; known: {known}")
        cdqn = CDQNConfig(**{k: settings.pop(k) for k in list(settings) if k in cdqn_fields})
        seeds = (int(settings.pop("seed")),) if "seed" in settings else cls.seeds
        if settings.get("episodes") == 0:
            settings["episodes"] = None  # 0: every test user once, as on the command line
        return cls(data=data, cdqn=cdqn, seeds=seeds, **settings)

    def as_params(self) -> dict[str, Any]:
        """MLflow params of a job."""
        return {
            "policy": self.policy, "k": self.k, "episodes": self.episodes,
            "episode_length": self.episode_length, "max_pool": self.max_pool,
            "seeds": list(self.seeds), "eval_interval": self.eval_interval,
            "user_model": self.user_model, "test_user_model": self.test_user_model,
            "cdqn": dataclasses.asdict(self.cdqn),
        }  # fmt: skip

    @property
    def final_step(self) -> int:
        """The step of the end-of-training evaluation: training env steps (DQN-Off: its
        updates), 0 for the untrained greedy and random policies."""
        return 0 if self.policy in ("greedy", "random") else self.cdqn.env_steps


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
) -> dict[str, float]:
    """Train (where the policy learns) and evaluate ``job``'s policy for one seed; returns
    the test environment's result. ``on_train_log(env_steps, diagnostics)`` gets the
    learner's diagnostics per iteration, ``on_result(step, result)`` every evaluation: each
    ``job.eval_interval`` env steps during training and the final one at `final_step`."""
    env_config = UserModelEnvConfig(slate_size=job.k, episode_length=job.episode_length,
                                    max_pool=job.max_pool, seed=seed)  # fmt: skip
    test_env = UserModelEnv(test_model, dataset.splits["test"], env_config)

    def evaluate_module(step: int, module) -> None:
        policy = ModuleSlatePolicy(module, state_model=train_model.model)
        result = evaluate_policy(test_env, policy, job.episodes, seed=10_000 + seed)
        if on_result is not None:
            on_result(step, result)

    policy = _policy(job, train_model, dataset.splits["train"], env_config, seed,
                     on_train_log, evaluate_module)  # fmt: skip
    result = evaluate_policy(test_env, policy, job.episodes, seed=10_000 + seed)
    if on_result is not None:
        on_result(job.final_step, result)
    return result


def run_slate_job(job: SlateJob) -> dict[str, Any]:
    """Train/evaluate per seed; returns per-seed rows and the mean ± std."""
    dataset = load_display_sets(job.data)
    train_model = load_user_model(job.user_model)
    if job.test_user_model is None:
        logger.warning("no --test-user-model: evaluating on the training user model")
    test_model = load_user_model(job.test_user_model or job.user_model)
    tracker = Tracker("recrl-slate") if job.tracking else NullTracker()
    rows = []
    with tracker:
        tracker.start(f"slate-{job.policy}-k{job.k}", params=job.as_params())
        for seed in job.seeds:

            def log(step: int, metrics: dict[str, float], seed=seed) -> None:
                names = {k: f"slate/train_{k.replace('/', '_')}/seed{seed}" for k in metrics}
                tracker.log_metrics({names[k]: v for k, v in metrics.items()}, step)

            def curve(step: int, result: dict[str, float], seed=seed) -> None:
                tracker.log_metrics({f"slate/curve_{m}/seed{seed}": result[m]
                                     for m in ("reward", "ctr")}, step)  # fmt: skip

            result = run_slate_seed(job, seed, train_model, test_model, dataset,
                                    on_train_log=log, on_result=curve)  # fmt: skip
            rows.append({"policy": job.policy, "k": job.k, "seed": seed, **result})
            tracker.log_metrics({f"slate/{k}": v for k, v in result.items()}, step=seed)
            logger.info("%s k=%d seed %d: %s", job.policy, job.k, seed, result)
        summary = {
            f"{m}_{stat}": fn([r[m] for r in rows])
            for m in ("reward", "ctr")
            for stat, fn in (("mean", statistics.fmean),
                             ("std", lambda v: statistics.stdev(v) if len(v) > 1 else 0.0))
        }  # fmt: skip
        tracker.log_metrics({f"slate/{k}": v for k, v in summary.items()}, step=len(rows))
        paths = _write_outputs(Path(job.out_dir), rows, job)
        for path in paths:
            tracker.log_artifact(path)
    return {"rows": rows, "summary": summary, "files": [str(p) for p in paths]}


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
