"""Settings of one off-policy evaluation (``recrl ope``), one source of truth for their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from recrl.models.ope.estimators import ESTIMATORS
from recrl.models.ope.policies import TargetPolicyConfig
from recrl.models.ope.reward_model import RewardModelConfig

EVALUATIONS = {
    "bts:random": "the BTS policy (its per-position item frequencies in the bts log) from the "
    "uniform-random log; truth: the bts log's click rate",
    "random:bts": "the uniform policy from the BTS log; truth: the random log's click rate",
    "random:random": "the uniform policy on its own log (IPS and SNIPS give its click rate)",
}
"""``target:log`` -> what it evaluates on the Open Bandit logs."""


@dataclass(frozen=True)
class OPEConfig:
    """Off-policy estimates with percentile bootstrap intervals (design.md §9), of one of:

    - Open Bandit policies' click rates: each estimator of ``estimators`` for each
      ``target:log`` pair of ``evaluations``, against the target's on-policy click rate;
    - a trained SASRec-family model (``policy_model``) acting as ``target_policy`` on a
      sequential log with propensities (``log_path``, design.md §9.6), against the truth
      when the log carries it (a simulator's expected rewards).

    A field of `RewardModelConfig` (``link``, ``l2``, ``interactions``, ``folds``,
    ``max_iter``) or of `TargetPolicyConfig` (``policy``, ``temperature``, ``top_k``) is a
    flat setting too."""

    data_path: str = "../shared/data/open-bandit-sample"
    """Open Bandit folder holding ``random/`` and ``bts/`` with ``CAMPAIGN.csv`` each."""
    campaign: str = "all"
    """Open Bandit campaign file: ``all``, ``men`` or ``women``."""
    evaluations: tuple[str, ...] = tuple(EVALUATIONS)
    """``target:log`` pairs to estimate (``bts:random``, ``random:bts``, ``random:random``)."""
    estimators: tuple[str, ...] = tuple(ESTIMATORS)
    """Estimators to run (``ips``, ``snips``, ``dm``, ``dr``, ``switch-dr``)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of each interval."""
    alpha: float = 0.05
    """1 − the intervals' level."""
    switch_tau: float = 20.0
    """Switch-DR's weight threshold τ: DR where w ≤ τ, DM above."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The reward model q̂ of DM, DR and switch-DR."""
    log_path: str | None = None
    """A sequential log with propensities, .parquet or .csv (design.md §9.6); set with
    ``policy_model``, it replaces the Open Bandit logs."""
    policy_model: str | None = None
    """The SASRec-family model evaluated on ``log_path``: the run folder of a tracked
    ``recrl train`` (or its ``model/``), or a ``runs:/`` or ``models:/`` URI."""
    target_policy: TargetPolicyConfig = field(default_factory=TargetPolicyConfig)
    """How the model acts on a row of ``log_path``: a softmax over the row's candidates, or
    its top-k."""
    seed: int = 0
    """Seed of the cross-fitting folds and the bootstrap."""
    tracking: bool = True
    """Log params, estimates and the table to MLflow."""
    experiment: str = "recrl-ope"
    """MLflow experiment name."""

    def __post_init__(self) -> None:
        for name in self.estimators:
            if name not in ESTIMATORS:
                raise ValueError(f"unknown estimator {name!r}; choose from {list(ESTIMATORS)}.")
        for pair in self.evaluations:
            if pair not in EVALUATIONS:
                raise ValueError(f"unknown evaluation {pair!r}; choose from {list(EVALUATIONS)}.")
        if self.n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be >= 2, got {self.n_bootstrap}.")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}.")
        if self.switch_tau < 0:
            raise ValueError(f"switch_tau must be >= 0, got {self.switch_tau}.")
        if (self.log_path is None) != (self.policy_model is None):
            raise ValueError(
                "log_path and policy_model go together: a sequential log (--log) is "
                "evaluated for a model (--policy-model); give both, or neither for Open Bandit."
            )

    @property
    def sequential(self) -> bool:
        """Whether this evaluates ``policy_model`` on ``log_path`` (not Open Bandit)."""
        return self.log_path is not None
