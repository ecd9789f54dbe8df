"""One Tune trial: `recrl train` of one variant/setting/seed, reporting each evaluation.

The trial is a function trainable around `recrl.pipelines.sasrec.job.train`: each validation
evaluation is reported to Tune (``eval/…``, Q statistics, ``updates``) with the checkpoint
taken right after it, and the trial's MLflow run is a child of the sweep's parent run.
A retried trial (Tune's ``FailureConfig``) resumes from its last reported checkpoint, in
the same MLflow run. A trial whose losses or Q values go non-finite is a *result* of the
study (the stability experiment looks for exactly that), not a crash: it reports its last
good evaluation with ``diverged = 1`` and ends normally, so Tune does not retry it.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recrl.pipelines.tracking_names import describe_run
from recrl.pipelines.tune.study import StudyConfig

if TYPE_CHECKING:
    from recrl.pipelines.tune.shared_split import SharedTrainSplit

logger = logging.getLogger(__name__)

REPORTED_LEARNER_METRICS = ("q/mean", "q/max", "q/td_error", "q/cql_gap", "loss/total")
"""Learner metrics reported with each evaluation (the report's Q blow-up check reads q/…)."""
TRIAL_RUN_DIR = "train"
"""The training job's run folder inside a trial's folder (checkpoint, stability figure)."""
DIVERGED = "diverged"
"""Reported 1.0 by a trial that stopped on non-finite values, 0.0 otherwise."""


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares besides its sampled settings."""

    study: StudyConfig
    parent_run_id: str | None
    """MLflow run of the sweep; trials log child runs under it."""
    tracking_uri: str | None
    """Absolute tracking URI (trials run in their own working directories); None: off."""
    gpus_per_trial: float
    """GPU fraction each trial's learner uses (0 on a CPU-only cluster)."""
    train_split: SharedTrainSplit | None = None
    """The train split in the object store (`recrl.pipelines.tune.shared_split`) when the study
    shares it; None: each trial reads the parquet files itself."""


def trial_name(config: dict[str, Any], study: StudyConfig) -> str:
    """``sasrec_ccql n_neg=10 seed=0``: variant (bandit studies: the fixed policy, if any),
    searched values, seed. Tune's name of the trial and its MLflow child run's name, so the
    compare view lists the trials by their settings."""
    lead = config.get("variant") or study.fixed.get("policy")
    settings = {key: config.get(key) for key in study.search}
    return describe_run(lead, {**settings, "seed": config["seed"]})


def trial_dirname(config: dict[str, Any], study: StudyConfig, trial_id: str) -> str:
    """The trial's folder: `trial_name` without spaces, and Tune's trial id."""
    return "-".join([*trial_name(config, study).split(), trial_id])


def run_trial(params: dict[str, Any], *, context: SweepContext) -> None:
    """Tune function trainable (see the module docstring)."""
    from ray import tune
    from recrl.pipelines.sasrec.job import TrainingDiverged, train

    params = dict(params)
    variant, seed = params.pop("variant"), int(params.pop("seed"))
    study = context.study
    config = study.trial_settings(variant, seed, params)
    config = replace(
        config,
        num_gpus_per_learner=context.gpus_per_trial,
        experiment=study.experiment,
        tracking=context.tracking_uri is not None,
    )
    if context.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = context.tracking_uri
    trial_dir = Path(tune.get_context().get_trial_dir())
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        resume_from = checkpoint.to_directory(str(trial_dir / "restored"))
        logger.info("trial resumes from %s", resume_from)

    last: dict[str, float] = {}

    def report(point) -> None:
        metrics = {"updates": point.updates, DIVERGED: 0.0}
        metrics.update({f"eval/{k}": float(v) for k, v in point.scores.items()})
        metrics.update(
            {k: point.learner[k] for k in REPORTED_LEARNER_METRICS if k in point.learner}
        )
        last.clear()
        last.update(metrics)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(point.checkpoint)))

    if context.train_split is not None:
        from recrl.pipelines.tune.shared_split import trial_reads_shared_split

        reading = trial_reads_shared_split(context.train_split)
    else:
        reading = nullcontext()
    try:
        with reading as configure:
            train(
                config,
                run_dir=trial_dir / TRIAL_RUN_DIR,
                run_name=tune.get_context().get_trial_name(),
                parent_run_id=context.parent_run_id,
                resume_from=resume_from,
                on_eval=report,
                overwrite=True,  # a first attempt replaces what a lost attempt left there
                configure_algorithm=configure,
            )
    except TrainingDiverged as exc:
        logger.warning("trial diverged: %s", exc)
        # The last good evaluation stands as the trial's result; a run that diverged before
        # its first evaluation reports the worst value of every eval metric.
        final = dict(last) or {study.metric: 0.0 if study.mode == "max" else math.inf}
        final[DIVERGED] = 1.0
        final["diverged_at"] = exc.updates
        tune.report(final)
