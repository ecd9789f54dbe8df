"""Off-policy evaluation of a trained SASRec-family model on a sequential log
(``recrl ope --log LOG --policy-model MODEL``, design.md §9.6): read and check the log, score
each row's candidates with the model, turn the scores into the target policy, fit the reward
model on the log, and estimate with bootstrap intervals."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from recrl.models.ope import LoggedFeedback, RewardFeatures, target_matrix
from recrl.models.ope.candidates import (
    CandidateSets,
    Ragged,
    candidate_features,
    candidate_support,
    catalogue_sets,
    vocabulary_index,
)
from recrl.models.ope.estimators import effective_sample_size, importance_weights
from recrl.models.ope.policies import TargetPolicyConfig
from recrl.pipelines.errors import UserError
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.ope.job import Evaluation, intervals, metrics, reward_predictions
from recrl.pipelines.ope.sasrec_policy import (
    CandidateScores,
    load_policy_model,
    score_candidates,
    with_id_type_of,
)
from recrl.pipelines.ope.session_log import read_session_log
from recrl.pipelines.tracking import Tracker

logger = logging.getLogger(__name__)

NO_SCORABLE_CANDIDATE = "no_scorable_candidate"
"""Exclusion reason: none of the row's candidates is in the model's catalogue, so the
target policy is undefined there."""
LOG_NAME = "log"
"""The log's side of an evaluation's ``target:log`` name."""


@dataclass(frozen=True)
class SessionInputs:
    """A candidate log ready for the estimators, on the rows the model can score:
    ``feedback`` (actions are slots), the slots, the model's ``scores`` and ``scorable``
    ``[n, C]``, the reward model's ``features``, the true ``expected`` rewards ``[n, C]``
    when the log has them, and the rows left out by reason."""

    feedback: LoggedFeedback
    sets: CandidateSets
    scores: np.ndarray
    scorable: np.ndarray
    features: RewardFeatures
    expected: np.ndarray | None
    excluded: dict[str, int]


def session_inputs(
    history: Ragged, sets: CandidateSets, reward: np.ndarray, propensity: np.ndarray,
    scored: CandidateScores, expected: np.ndarray | None = None,
) -> SessionInputs:  # fmt: skip
    """Leave out (and count) the rows whose candidates the model cannot score, and build
    the feedback and the reward model's features of the others."""
    keep = np.flatnonzero(scored.scorable.any(axis=1))
    excluded = {NO_SCORABLE_CANDIDATE: len(reward) - len(keep)}
    if len(keep) == 0:
        raise UserError(
            "no row of the log has a candidate the model can score: are the log's item ids "
            "the raw ids of the data the model was trained on?"
        )
    if excluded[NO_SCORABLE_CANDIDATE]:
        logger.warning("%d of %d rows left out: no candidate in the model's catalogue",
                       excluded[NO_SCORABLE_CANDIDATE], len(reward))  # fmt: skip
    sets = sets.take(keep)
    scores, scorable = scored.scores[keep], scored.scorable[keep]
    in_vocabulary = history.with_values(vocabulary_index(sets.vocabulary, history.values))
    features = candidate_features(in_vocabulary.take(keep), sets, scores, scorable)
    feedback = LoggedFeedback(
        actions=sets.shown, rewards=reward[keep], pscore=propensity[keep],
        n_actions=sets.items.shape[1],
    )  # fmt: skip
    return SessionInputs(
        feedback, sets, scores, scorable, features,
        None if expected is None else expected[keep], excluded,
    )  # fmt: skip


def evaluate_target(
    inputs: SessionInputs, name: str, target: np.ndarray, config: OPEConfig,
    predictions: tuple[np.ndarray | None, np.ndarray | None] | None = None,
) -> Evaluation:  # fmt: skip
    """Every estimator of ``config`` for the target distribution ``target`` ``[n, C]``;
    ``predictions`` (`reward_predictions`) may be shared between targets: $\\hat q$ does
    not depend on the target."""
    f = inputs.feedback
    target = target_matrix(f, target)
    if predictions is None:
        predictions = reward_predictions(
            f, inputs.features, config.reward_model, config.estimators,
            n_items=len(inputs.sets.vocabulary), seed=config.seed,
        )  # fmt: skip
    estimates = intervals(
        f, target, *predictions, config.estimators, tau=config.switch_tau,
        n_bootstrap=config.n_bootstrap, alpha=config.alpha, seed=config.seed,
    )  # fmt: skip
    truth = np.nan
    if inputs.expected is not None:
        truth = float((target * inputs.expected).sum(axis=1).mean())
    gaps = candidate_support(inputs.sets, target)
    return Evaluation(
        name=f"{name}:{LOG_NAME}", truth=truth, estimates=estimates,
        effective_sample_size=effective_sample_size(
            importance_weights(f.actions, f.pscore, target)),
        unlogged_pairs=gaps.count, unlogged_mass=gaps.mass, rows=f.n,
        excluded=dict(inputs.excluded), log_value=float(f.rewards.mean()),
    )  # fmt: skip


def evaluate_policy(
    inputs: SessionInputs, policy: TargetPolicyConfig, config: OPEConfig, predictions=None
) -> Evaluation:
    """`evaluate_target` for the model acting as ``policy`` on its scores."""
    target = policy.distribution(inputs.scores, inputs.scorable)
    return evaluate_target(inputs, policy.name, target, config, predictions)


def run_session_ope(config: OPEConfig, tracker: Tracker | None = None) -> list[Evaluation]:
    """``config.policy_model`` acting as ``config.target_policy`` on ``config.log_path``;
    logs `recrl.pipelines.ope.job.metrics` to ``tracker``."""
    if not config.sequential:
        raise ValueError("run_session_ope needs config.log_path and config.policy_model")
    log = read_session_log(config.log_path)
    recommender = with_id_type_of(load_policy_model(config.policy_model), log.item)
    sets = log.sets if log.sets is not None else catalogue_sets(log.item, recommender.raw_ids)
    scored = score_candidates(recommender, log.history, sets)
    inputs = session_inputs(
        log.history, sets, log.reward, log.propensity, scored, log.expected_reward
    )
    result = evaluate_policy(inputs, config.target_policy, config)
    if tracker is not None:
        tracker.log_metrics(metrics(result), step=0)
    return [result]
