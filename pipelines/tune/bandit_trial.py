"""One Tune trial of a bandit study: `recrl bandit` of one policy/setting/seed.

The run's metric writes (every ``log_interval`` rounds: ``bandit/reward_window``,
``bandit/cumulative_reward``, …, see `recrl.pipelines.bandit.job`) go to the trial's MLflow child
run and, as the same numbers, to Tune as one result each, with ``rounds`` as the step — so
the sweep's stability report draws the paper's reward-over-rounds curves (REN Fig. 1) as
mean ± std over seeds. A bandit run has no checkpoint: a retried trial starts over, in a
new child run (the failed one is marked FAILED).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from recrl.pipelines.tracking import NullTracker, Tracker
from recrl.pipelines.tune.trainable import DIVERGED, SweepContext

logger = logging.getLogger(__name__)


class _ReportingTracker:
    """Forwards a bandit run's metric writes to its MLflow run and to Tune."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> dict[str, float]:
        from ray import tune

        logged = self.tracker.log_metrics(metrics, step)
        tune.report({**{k: float(v) for k, v in metrics.items()}, "rounds": step, DIVERGED: 0.0})
        return logged

    def __getattr__(self, name: str) -> Any:  # artifacts, tags: the MLflow run only
        return getattr(self.tracker, name)


def run_bandit_trial(params: dict[str, Any], *, context: SweepContext) -> None:
    """Tune function trainable (see the module docstring)."""
    from ray import tune
    from recrl.pipelines.bandit.job import run_bandit

    params = dict(params)
    seed = int(params.pop("seed"))
    study = context.study
    config = study.trial_settings(None, seed, params)
    config = replace(config, experiment=study.experiment, tracking=bool(context.tracking_uri))
    if context.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = context.tracking_uri
    tracker = Tracker(study.experiment, context.tracking_uri) if config.tracking else NullTracker()
    with tracker:
        tracker.start(
            tune.get_context().get_trial_name(),
            params=config.as_params(),
            tags={"policy": config.policy, "env": config.env, "recrl.kind": "bandit"},
            parent_run_id=context.parent_run_id,
        )
        result = run_bandit(config, _ReportingTracker(tracker), progress=False)
    logger.info(
        "trial %s: final-window reward %.3f (oracle %.3f)",
        tune.get_context().get_trial_name(), result.final_window_reward,
        result.final_window_oracle,
    )  # fmt: skip
