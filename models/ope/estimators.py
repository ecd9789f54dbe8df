"""Off-policy estimators of a target policy's value on logged bandit feedback (design.md §9.2).

Notation: row $i$ of the log has context $x_i$, logged action $a_i$, reward $r_i$ and
behaviour propensity $\\mu_i = \\mu(a_i \\mid x_i)$; $\\pi$ is the target policy and
$w_i = \\pi(a_i \\mid x_i) / \\mu_i$ its importance weight; $\\hat q(x, a)$ is a reward model
and $\\hat q_\\pi(x) = \\sum_a \\pi(a \\mid x)\\,\\hat q(x, a)$ its value under $\\pi$. The
value to estimate is $V(\\pi) = \\mathbb E_x \\sum_a \\pi(a \\mid x)\\, q(x, a)$.

Every estimator here is a ratio of row sums, $\\hat V = \\sum_i v_i / \\sum_i u_i$
(`RowTerms`): $u_i = 1$ for all but SNIPS, whose $u_i = w_i$. The bootstrap
(`recrl.models.ope.bootstrap`) resamples rows of these terms, so an interval costs no refit.
Inputs are numpy arrays: ``rewards``, ``pscore``: ``[n]``; ``actions``: int ``[n]``;
``target``, ``q_hat``: ``[n, A]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowTerms:
    """$\\hat V = \\sum_i$ ``values`` $/ \\sum_i$ ``weights``, both ``[n]``."""

    values: np.ndarray
    weights: np.ndarray

    @property
    def value(self) -> float:
        return float(self.values.sum() / self.weights.sum())


def importance_weights(actions: np.ndarray, pscore: np.ndarray, target: np.ndarray) -> np.ndarray:
    """$w_i = \\pi(a_i \\mid x_i) / \\mu_i$, ``[n]``."""
    return target[np.arange(len(actions)), actions] / pscore


def ips(actions, rewards, pscore, target) -> RowTerms:
    """Inverse propensity scoring (Horvitz & Thompson 1952; for contextual bandits see
    Dudík et al. 2011): $\\hat V_{IPS} = \\frac1n \\sum_i w_i r_i$.

    Unbiased when $\\mu(a \\mid x) > 0$ wherever $\\pi(a \\mid x) > 0$ and the propensities
    are the true ones; its variance grows with the weights."""
    w = importance_weights(actions, pscore, target)
    return RowTerms(w * rewards, np.ones_like(w))


def snips(actions, rewards, pscore, target) -> RowTerms:
    """Self-normalised IPS (Swaminathan & Joachims 2015, "The self-normalized estimator for
    counterfactual learning"): $\\hat V_{SNIPS} = \\sum_i w_i r_i / \\sum_i w_i$.

    Divides by the realised sum of weights instead of $n$ (whose expectation it is): biased
    by $O(1/n)$ but consistent, always inside the reward range, and with lower variance
    than IPS when weights are large."""
    w = importance_weights(actions, pscore, target)
    return RowTerms(w * rewards, w)


def dm(target, q_hat) -> RowTerms:
    """Direct method: $\\hat V_{DM} = \\frac1n \\sum_i \\hat q_\\pi(x_i)$.

    Uses no propensity; exact when $\\hat q = q$, biased by as much as the reward model is
    wrong where $\\pi$ puts its mass. Its variance is the smallest of these estimators."""
    values = (target * q_hat).sum(axis=1)
    return RowTerms(values, np.ones_like(values))


def dr(actions, rewards, pscore, target, q_hat) -> RowTerms:
    """Doubly robust (Dudík, Langford & Li 2011, "Doubly robust policy evaluation and
    learning"): the direct method plus an importance-weighted correction of the
    reward model's error on the logged action,

    $$\\hat V_{DR} = \\frac1n \\sum_i \\Big[\\hat q_\\pi(x_i)
        + w_i\\,\\big(r_i - \\hat q(x_i, a_i)\\big)\\Big].$$

    Unbiased when the propensities are right, whatever $\\hat q$ (provided $\\hat q$ of row
    $i$ does not depend on $r_i$ — hence cross-fitting, `recrl.models.ope.reward_model`);
    its variance shrinks as $\\hat q$ improves."""
    n = len(actions)
    w = importance_weights(actions, pscore, target)
    values = (target * q_hat).sum(axis=1) + w * (rewards - q_hat[np.arange(n), actions])
    return RowTerms(values, np.ones_like(values))


def switch_dr(actions, rewards, pscore, target, q_hat, *, tau: float) -> RowTerms:
    """Switch-DR (Wang, Agarwal & Dudík 2017, "Optimal and adaptive off-policy evaluation in
    contextual bandits", §4): DR where the weight is at most $\\tau$, the direct method where
    it is larger,

    $$\\hat V_{SW} = \\frac1n \\sum_i \\Big[\\hat q_\\pi(x_i)
        + \\mathbf 1[w_i \\le \\tau]\\, w_i\\,\\big(r_i - \\hat q(x_i, a_i)\\big)\\Big].$$

    The paper writes it over all actions, DR on $\\{a : \\pi(a|x)/\\mu(a|x) \\le \\tau\\}$ and DM on
    the rest; the two agree, and this form needs $\\mu$ only at the logged action. $\\tau =
    \\infty$ is DR, $\\tau = 0$ is DM; in between it trades the bias of DM on the rare,
    heavy-weight actions for the variance their weights would bring. ``tau`` is fixed here
    (the paper also picks it from the data)."""
    if not tau >= 0:
        raise ValueError(f"switch-DR's tau must be >= 0, got {tau}")
    n = len(actions)
    w = importance_weights(actions, pscore, target)
    keep = w <= tau
    values = (target * q_hat).sum(axis=1) + keep * w * (rewards - q_hat[np.arange(n), actions])
    return RowTerms(values, np.ones_like(values))


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator by name: what it assumes (one line, ``recrl ope --help`` prints it) and
    whether it needs the reward model."""

    summary: str
    needs_reward_model: bool


ESTIMATORS: dict[str, EstimatorSpec] = {
    "ips": EstimatorSpec(
        "mean of w·r, w = π/μ; unbiased if the logged propensities are right and μ > 0 "
        "wherever π > 0; variance grows with the weights",
        needs_reward_model=False,
    ),
    "snips": EstimatorSpec(
        "Σ w·r / Σ w (Swaminathan & Joachims 2015); same assumptions as IPS, O(1/n) bias, "
        "lower variance, stays within the reward range",
        needs_reward_model=False,
    ),
    "dm": EstimatorSpec(
        "mean of Σ_a π(a|x)·q̂(x,a); needs no propensities but assumes the reward model is "
        "right where π puts its mass (else biased)",
        needs_reward_model=True,
    ),
    "dr": EstimatorSpec(
        "DM + w·(r − q̂(x,a)) (Dudík et al. 2011); unbiased if the propensities OR the reward "
        "model are right (q̂ cross-fitted); lower variance than IPS when q̂ is good",
        needs_reward_model=True,
    ),
    "switch-dr": EstimatorSpec(
        "DR where w ≤ tau, DM where w > tau (Wang et al. 2017); bounds the variance of heavy "
        "weights at the cost of DM's bias on those rows",
        needs_reward_model=True,
    ),
}
"""Estimator name -> `EstimatorSpec`, in the order tables list them."""


def row_terms(
    name: str,
    actions: np.ndarray,
    rewards: np.ndarray,
    pscore: np.ndarray,
    target: np.ndarray,
    q_hat: np.ndarray | None = None,
    *,
    tau: float = float("inf"),
) -> RowTerms:
    """The estimator ``name`` of `ESTIMATORS` on one log (``q_hat`` for those that need it)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {list(ESTIMATORS)}")
    if ESTIMATORS[name].needs_reward_model and q_hat is None:
        raise ValueError(f"estimator {name!r} needs the reward model's predictions q_hat")
    functions: dict[str, Callable[[], RowTerms]] = {
        "ips": lambda: ips(actions, rewards, pscore, target),
        "snips": lambda: snips(actions, rewards, pscore, target),
        "dm": lambda: dm(target, q_hat),
        "dr": lambda: dr(actions, rewards, pscore, target, q_hat),
        "switch-dr": lambda: switch_dr(actions, rewards, pscore, target, q_hat, tau=tau),
    }
    return functions[name]()


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of the importance weights, $(\\sum w)^2 / \\sum w^2$: $n$
    for equal weights, small when a few rows dominate."""
    total = float((weights**2).sum())
    return float(weights.sum() ** 2 / total) if total > 0 else 0.0
