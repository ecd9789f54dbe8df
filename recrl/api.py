"""The Python API: each job of the ``recrl`` command line as a function that takes its typed
config and returns a typed result, for notebooks and scripts.

The examples below run as tests (``tests/test_api.py``); together they are the README's
pipeline in Python: a generated session log is prepared, a SASRec variant trained on it and
swept, a bandit run, and the slate chain (display sets, user model, a slate policy). Jobs
that need Ray start a local runtime when none is up (or join ``RAY_ADDRESS``), exactly as
the command line does, and log to MLflow unless their config says ``tracking=False``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recrl.pipelines.bandit.config import BanditRunConfig
    from recrl.pipelines.bandit.loop import BanditRunResult
    from recrl.pipelines.ope.config import OPEConfig
    from recrl.pipelines.ope.job import Evaluation
    from recrl.pipelines.prepare.config import PrepareConfig
    from recrl.pipelines.prepare.pipeline import PrepareResult
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.sasrec.job import TrainResult
    from recrl.pipelines.slate.config import SlateJob
    from recrl.pipelines.slate.job import SlateResult
    from recrl.pipelines.tune.report import SweepReport
    from recrl.pipelines.tune.study import StudyConfig
    from recrl.pipelines.usermodel.job import UserModelJob, UserModelResult


def prepare(config: PrepareConfig) -> PrepareResult:
    """Parse, clean, split a session log and write its RL transitions (``recrl prepare``).

    >>> import recrl
    >>> from recrl.envs.generated_dataset import write_generated_dataset
    >>> from recrl.envs.session_generator import SessionGeneratorConfig
    >>> _ = write_generated_dataset(SessionGeneratorConfig(n_sessions=400, n_items=60), "log")
    >>> result = recrl.prepare(recrl.PrepareConfig(
    ...     source="generic", input_path="log/sessions", output_path="prepared"))
    >>> rows = result.meta["rows"]
    >>> rows["input"] == rows["kept"] + sum(rows["dropped"].values())
    True
    >>> sorted(result.meta["splits"])
    ['test', 'train', 'val']
    """
    from recrl.pipelines.prepare.pipeline import prepare as run_prepare

    return run_prepare(config)


def train(
    config: TrainConfig, *, run_dir: str | Path | None = None, overwrite: bool = False
) -> TrainResult:
    """Train one SASRec variant offline on RLlib and evaluate it (``recrl train``).

    Build the config from a variant's preset and flat settings with
    `TrainConfig.for_variant`; ``run_dir`` (default ``runs/<variant>-<time>``) receives the
    checkpoint, ``config.json`` and the stability figure.

    >>> import recrl
    >>> config = recrl.TrainConfig.for_variant(
    ...     "sasrec_ccql", "prepared", total_steps=20, eval_interval=10, batch_size=32,
    ...     hidden_size=16, tracking=False)
    >>> result = recrl.train(config, run_dir="runs/ccql")
    >>> result.updates, [point["updates"] for point in result.val_history]
    (20, [10, 20])
    >>> 0.0 <= result.test_metrics["hr_20_click"] <= 1.0
    True
    """
    from recrl.pipelines.sasrec.job import train as run_train

    return run_train(config, run_dir=run_dir, overwrite=overwrite)


def tune(
    study: StudyConfig | str | Path,
    *,
    settings: dict | None = None,
    storage: str | Path | None = None,
    resume: bool = False,
    tracking: bool = True,
    verbose: int = 1,
) -> SweepReport:
    """Run a Ray Tune sweep (``recrl tune``): a study file's path or a `StudyConfig`, with
    ``settings`` overriding its keys as ``--set`` does; returns the stability report.
    ``verbose=0`` prints nothing to the console (logging still goes to its handlers).

    >>> import recrl
    >>> report = recrl.tune("tune_configs/smoke_cpu.yaml", settings={
    ...     "data": "prepared", "variants": ["sasrec"], "seeds": [0], "total_steps": 10,
    ...     "eval_interval": 5, "hidden_size": 16, "batch_size": 32, "search": {}},
    ...     storage="runs/sweeps", tracking=False, verbose=0)
    >>> report.figure.is_file(), report.csv.is_file()
    (True, True)
    """
    from recrl.pipelines.tune.study import load_study
    from recrl.pipelines.tune.sweep import DEFAULT_STORAGE, run_sweep

    if isinstance(study, str | Path):
        study = load_study(study, settings or {})
    elif settings:
        raise ValueError("settings apply to a study file; change a StudyConfig with replace()")
    return run_sweep(
        study, storage=storage or DEFAULT_STORAGE, resume=resume, tracking=tracking,
        verbose=verbose,
    )  # fmt: skip


def bandit(config: BanditRunConfig, *, progress: bool = False) -> BanditRunResult:
    """One online run of an exploration policy against a simulator (``recrl bandit``),
    tracked in MLflow as one run when ``config.tracking``.

    >>> import recrl
    >>> result = recrl.bandit(recrl.BanditRunConfig(
    ...     policy="ren", env="syn-s", rounds=200, tracking=False))
    >>> len(result.rewards), bool((result.rewards <= result.oracle_rewards + 1e-9).all())
    (200, True)
    """
    from recrl.pipelines.bandit.job import run_bandit
    from recrl.pipelines.tracking import NullTracker, Tracker

    tracker = Tracker(experiment=config.experiment) if config.tracking else NullTracker()
    with tracker:
        name = f"{config.policy}-{config.env}-seed{config.seed}"
        tracker.start(name, params=config.as_params(), tags={"policy": config.policy})
        return run_bandit(config, tracker, progress=progress)


def usermodel(job: UserModelJob, *, progress: bool = False) -> UserModelResult:
    """Fit the GAN user model of Chen et al. (2019) on display sets (``recrl usermodel fit``)
    and save it to ``job.out_dir``; display sets come from ``recrl usermodel build`` or
    `recrl.pipelines.display_sets.build.build_display_sets`.

    >>> import recrl
    >>> from recrl.pipelines.display_sets.build import build_display_sets
    >>> from recrl.pipelines.display_sets.config import DisplaySetConfig
    >>> _ = build_display_sets(DisplaySetConfig(
    ...     source="generic", input_path="log/sessions", output_path="sets"))
    >>> result = recrl.usermodel(recrl.UserModelJob(
    ...     data="sets", out_dir="user_model", model=recrl.UserModelConfig(epochs=2),
    ...     baselines=False, tracking=False))
    >>> Path(result.model_path).name, 0.0 <= result.test["prec1"] <= result.test["prec2"] <= 1.0
    ('user_model.pt', True)
    """
    from recrl.pipelines.usermodel.job import run_user_model_job

    return run_user_model_job(job, progress=progress)


def slate(job: SlateJob) -> SlateResult:
    """Train (for the Q-network policies) and evaluate a k-item slate policy against the
    simulated users of fitted user models (``recrl slate``).

    >>> import recrl
    >>> result = recrl.slate(recrl.SlateJob(
    ...     data="sets", user_model="user_model/user_model.pt", policy="greedy", k=3,
    ...     episodes=5, seeds=(0, 1), out_dir="slate", tracking=False))
    >>> [row["seed"] for row in result.rows]
    [0, 1]
    >>> sorted(result.summary)  # doctest: +NORMALIZE_WHITESPACE
    ['ctr_mean', 'ctr_std', 'reward_mean', 'reward_std',
     'visit_length_mean', 'visit_length_std']
    """
    from recrl.pipelines.slate.job import run_slate_job

    return run_slate_job(job)


def ope(config: OPEConfig) -> list[Evaluation]:
    """Off-policy estimates (IPS, SNIPS, DM, DR, switch-DR) with bootstrap intervals
    (``recrl ope``, design.md §9): of Open Bandit policies' click rates against their
    on-policy click rates, or, with ``config.log_path`` and ``config.policy_model``, of a
    trained SASRec-family model on a sequential log (§9.6). One MLflow run in
    ``config.experiment`` when ``config.tracking``.

    >>> import recrl
    >>> from recrl.envs.synthetic_log import write_open_bandit_like
    >>> write_open_bandit_like("obd", n=600)
    >>> results = recrl.ope(recrl.OPEConfig(
    ...     data_path="obd", n_bootstrap=100, tracking=False))
    >>> [r.name for r in results], sorted(results[0].estimates)
    (['bts:random', 'random:bts', 'random:random'], ['dm', 'dr', 'ips', 'snips', 'switch-dr'])
    >>> on_own_log = results[2]
    >>> abs(on_own_log.estimates["ips"].value - on_own_log.truth) < 1e-12
    True

    A SASRec model as the target policy: here an untrained network over the prepared
    dataset's items, saved as ``recrl train`` saves one, acting greedily (top-1) on a log
    simulated in the world the generated sessions came from, which knows the truth.

    >>> import json
    >>> import torch
    >>> from recrl.envs.synthetic_session_log import (
    ...     SessionLogConfig, draw_session_log, session_contexts, world_of)
    >>> from recrl.models.ope.policies import TargetPolicyConfig
    >>> from recrl.models.sasrec.encoder import SASRecConfig
    >>> from recrl.models.sasrec.network import SASRecQNetwork
    >>> from recrl.pipelines.sasrec.serving import save_recommender
    >>> meta = json.loads(Path("prepared/meta.json").read_text())
    >>> _ = torch.manual_seed(0)
    >>> network = SASRecQNetwork(meta["n_items"], SASRecConfig(hidden_size=16, max_len=meta["L"]))
    >>> _ = save_recommender("policy", network, dataset="prepared")
    >>> world = world_of("log")  # the generated sessions of the `prepare` example
    >>> sessions = SessionLogConfig(sessions=200, skip_sessions=world.n_sessions)
    >>> log = draw_session_log(session_contexts(world, sessions), sessions, seed=0)
    >>> _ = log.write("impressions.parquet")
    >>> [result] = recrl.ope(recrl.OPEConfig(
    ...     log_path="impressions.parquet", policy_model="policy", n_bootstrap=200,
    ...     target_policy=TargetPolicyConfig(policy="top_k"), tracking=False))
    >>> result.name, result.rows == len(log.reward) - result.excluded["no_scorable_candidate"]
    ('top_1:log', True)
    >>> dr = result.estimates["dr"]
    >>> dr.low <= result.truth <= dr.high
    True
    """
    from recrl.pipelines.ope.job import format_table
    from recrl.pipelines.tracking import NullTracker, Tracker

    if config.sequential:
        from recrl.pipelines.ope.session_job import run_session_ope as run

        name, tags = f"ope-{Path(config.log_path).stem}", {"policy_model": config.policy_model}
    else:
        from recrl.pipelines.ope.job import run_ope as run

        name, tags = f"ope-{config.campaign}", {"evaluations": ",".join(config.evaluations)}
    tracker = Tracker(experiment=config.experiment) if config.tracking else NullTracker()
    with tracker:
        tracker.start(name, params=dataclasses.asdict(config), tags=tags)
        results = run(config, tracker if config.tracking else None)
        if config.tracking:
            tracker.log_text(format_table(results), "estimates.md")
        return results
