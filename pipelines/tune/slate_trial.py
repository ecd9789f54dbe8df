"""One Tune trial of a slate study: `recrl slate` of one policy/setting/seed.

The trial trains its policy against the training users' simulator and evaluates it on the
test users' simulator every ``eval_interval`` env steps and at the end (paper Table 3:
mean learned reward per step, CTR); each evaluation goes to the trial's MLflow child run
(``slate/reward``, ``slate/ctr`` over env steps) and to Tune as one result, with
``env_steps`` as the step, so the sweep's report draws reward against training steps as
mean ± std over seeds. The learner's diagnostics go to the child run only. A slate
trial has no checkpoint: a retried trial starts over, in a new child run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from recrl.pipelines.tracking import NullTracker, Tracker
from recrl.pipelines.tune.trainable import DIVERGED, SweepContext

logger = logging.getLogger(__name__)


def run_slate_trial(params: dict[str, Any], *, context: SweepContext) -> None:
    """Tune function trainable (see the module docstring)."""
    from ray import tune
    from recrl.models.user_model.checkpoint import load_user_model
    from recrl.pipelines.display_sets.records import load_display_sets
    from recrl.pipelines.slate.job import run_slate_seed

    params = dict(params)
    seed = int(params.pop("seed"))
    job = replace(context.study.trial_settings(None, seed, params),
                  tracking=bool(context.tracking_uri))  # fmt: skip
    if context.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = context.tracking_uri
    study = context.study
    tracker = Tracker(study.experiment, context.tracking_uri) if job.tracking else NullTracker()
    train_model = load_user_model(job.user_model)
    test_model = load_user_model(job.test_user_model or job.user_model)
    dataset = load_display_sets(job.data)

    def train_log(step: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics({f"slate/train_{k.replace('/', '_')}": v
                             for k, v in metrics.items()}, step)  # fmt: skip

    def report(step: int, result: dict[str, float]) -> None:
        metrics = {f"slate/{k}": float(v) for k, v in result.items()}
        tracker.log_metrics(metrics, step)
        tune.report({**metrics, "env_steps": step, DIVERGED: 0.0})

    with tracker:
        tracker.start(
            tune.get_context().get_trial_name(),
            params=job.as_params(),
            tags={"policy": job.policy, "k": str(job.k), "recrl.kind": "slate"},
            parent_run_id=context.parent_run_id,
        )
        result = run_slate_seed(job, seed, train_model, test_model, dataset,
                                on_train_log=train_log, on_result=report)  # fmt: skip
    logger.info("trial %s: test reward %.3f, ctr %.3f", tune.get_context().get_trial_name(),
                result["reward"], result["ctr"])  # fmt: skip
