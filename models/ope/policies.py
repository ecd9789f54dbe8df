"""Target policies as action distributions, the input of every estimator (design.md §9.4).

Each function returns $\\pi(a \\mid x_i)$ as a numpy array ``[n, A]`` (or ``[n, A, K]`` per
position); rows sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


def uniform(n: int, n_actions: int) -> np.ndarray:
    """$\\pi(a \\mid x) = 1/A$: Open Bandit's random policy."""
    return np.full((n, n_actions), 1.0 / n_actions)


def position_frequencies(
    actions: np.ndarray, positions: np.ndarray, n_actions: int, n_positions: int
) -> np.ndarray:
    """The empirical distribution of the actions shown at each position of a log,
    ``[A, K]``: $\\hat\\pi(a \\mid k) = \\#\\{i : a_i = a, k_i = k\\} / \\#\\{i : k_i = k\\}$.

    On a policy's own log this estimates its context-free marginal
    $\\mathbb E_t[\\pi_t(a \\mid k)]$ (Open Bandit's BTS, whose posterior moves over the week
    of logging); broadcast it to rows with ``np.broadcast_to(freq, (n, A, K))``."""
    counts = np.zeros((n_actions, n_positions))
    np.add.at(counts, (actions, positions), 1.0)
    totals = counts.sum(axis=0, keepdims=True)
    if (totals == 0).any():
        empty = int(np.flatnonzero(totals[0] == 0)[0])
        raise ValueError(f"position {empty} has no logged row: its distribution is undefined")
    return counts / totals


def softmax(scores: np.ndarray, *, temperature: float = 1.0, mask: np.ndarray | None = None):
    """$\\pi(a \\mid x_i) \\propto \\exp(s_{ia}/T)$ over the actions ``mask`` allows
    (a SASRec family model's scores over the logged candidates, say); ``scores``,
    ``mask``: ``[n, A]``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.asarray(scores, dtype=np.float64) / temperature
    if mask is not None:
        if not np.asarray(mask).any(axis=1).all():
            raise ValueError("every row of mask must allow at least one action")
        logits = np.where(mask, logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def top_k(scores: np.ndarray, k: int = 1, *, mask: np.ndarray | None = None) -> np.ndarray:
    """A deterministic ranking policy: $\\pi(a \\mid x_i) = 1/k_i$ on the $k_i$ highest-scoring
    actions (ties broken by the lower id), 0 elsewhere. ``k = 1`` is the greedy policy; for
    $k > 1$ it is the policy that shows one of its top-$k$ items uniformly at random.

    ``mask`` ``[n, A]`` limits row $i$ to the actions it allows (its logged candidates); a row
    that allows $m_i < k$ of them spreads its mass over all $m_i$: $k_i = \\min(k, m_i)$."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k must be in 1..{scores.shape[1]}, got {k}")
    allowed = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask, bool)
    counts = allowed.sum(axis=1)
    if (counts == 0).any():
        raise ValueError("every row of mask must allow at least one action")
    order = _rank_order(scores, allowed)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :], axis=1)
    chosen = np.minimum(k, counts)[:, None]
    return np.where(rank < chosen, 1.0 / chosen, 0.0)


def _rank_order(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Each row's actions from best to worst, allowed ones first, ties by the lower id."""
    keyed = np.where(allowed, -scores, np.inf)  # disallowed ones sort last, whatever their score
    return np.argsort(keyed, axis=1, kind="stable")


POLICIES = ("softmax", "top_k")
"""How `TargetPolicyConfig` turns scores into a distribution."""


@dataclass(frozen=True)
class TargetPolicyConfig:
    """How a scoring model (a SASRec-family network, say) acts on a row of a log: a
    distribution over the row's candidates that the model can score (design.md §9.6)."""

    policy: Literal["softmax", "top_k"] = "softmax"
    """``softmax``: π(a|x) ∝ exp(score/temperature) over the candidates, the model as a
    stochastic policy; ``top_k``: mass 1/k on each of its k best candidates (k = 1: greedy)."""
    temperature: float = 1.0
    """Softmax temperature T (policy=softmax): lower is closer to the greedy policy."""
    top_k: int = 1
    """k of policy=top_k; a row with fewer scorable candidates spreads over all of them."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    @property
    def name(self) -> str:
        """A short name for tables and metric keys (``softmax_t1``, ``top_3``)."""
        if self.policy == "softmax":
            return f"softmax_t{self.temperature:g}".replace(".", "p")
        return f"top_{self.top_k}"

    def distribution(self, scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """$\\pi(\\cdot \\mid x_i)$ ``[n, A]`` from ``scores`` ``[n, A]``, zero where ``mask`` is
        False (padding, or a candidate the model cannot score)."""
        if self.policy == "softmax":
            return softmax(np.where(mask, scores, 0.0), temperature=self.temperature, mask=mask)
        return top_k(scores, min(self.top_k, scores.shape[1]), mask=mask)
