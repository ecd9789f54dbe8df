"""Off-policy evaluation of design.md §9: estimators, bootstrap intervals, the reward model,
target policies and per-row candidate sets (`recrl.models.ope.candidates`, §9.6), as pure
numpy functions (the reward model fits with torch)."""

from recrl.models.ope.bootstrap import Interval, bootstrap_interval
from recrl.models.ope.estimators import (
    ESTIMATORS,
    RowTerms,
    dm,
    dr,
    effective_sample_size,
    importance_weights,
    ips,
    row_terms,
    snips,
    switch_dr,
)
from recrl.models.ope.logged_feedback import (
    LoggedFeedback,
    OPEInputError,
    Support,
    support,
    target_matrix,
)
from recrl.models.ope.reward_model import (
    RewardFeatures,
    RewardModel,
    RewardModelConfig,
    cross_fit,
    fit_reward_model,
)

__all__ = [
    "ESTIMATORS",
    "Interval",
    "LoggedFeedback",
    "OPEInputError",
    "RewardFeatures",
    "RewardModel",
    "RewardModelConfig",
    "RowTerms",
    "Support",
    "bootstrap_interval",
    "cross_fit",
    "dm",
    "dr",
    "effective_sample_size",
    "fit_reward_model",
    "importance_weights",
    "ips",
    "row_terms",
    "snips",
    "support",
    "switch_dr",
    "target_matrix",
]
