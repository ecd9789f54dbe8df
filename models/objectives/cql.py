"""Conservative Q-learning regulariser (Kumar et al. 2020) as used by SASRec-CCQL.

Paper: "Addressing challenges in RL for recommender systems with conservative objectives",
§3.3 eq. (2) (the CQL term) and eq. (4) (``L = L_CE + ω·L_Q + L_CO + α·L_CQL``); design.md §4 "CQL".
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

CQLActions = Literal["negatives", "all"]


def cql_loss(
    q_data: Tensor, q_set: Tensor, alpha: float, temperature: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """``α · 1/B · Σ_b [ τ · logsumexp_{a ∈ A(s_b)} Q(s_b, a)/τ − Q(s_b, a_b) ]``.

    ``A(s)`` is ``{a_data} ∪ {a⁻_1..a⁻_N}`` (``cql_actions="negatives"``, the paper's choice:
    Q is pushed down on sampled negatives instead of CQL's random actions) or every item
    (``cql_actions="all"``, eq. (2)'s full sum). Sampled negatives form a multiset: a duplicate
    counts twice, as a Monte-Carlo estimate would. τ → 0 gives the max over A(s); at τ = 1
    this is the CQL term of the paper's eq. (2). The loss already includes α: the caller adds
    it as is (do not multiply by ``cql_alpha`` again).

    Shapes: ``q_data`` = Q_online(s_b, a_b) [B] at the logged action; ``q_set`` = Q_online
    (s_b, a) for every a in A(s_b) [B, K]: ``[Q(s, a_data), Q(s, a⁻_1..a⁻_N)]`` (K = 1 + N)
    or Q(s, ·) over the catalogue (K = I). Either holds a_data, so the bracket is ≥ 0.

    Deviation from the public SASRec-CCQL reference code (design.md §8): there the sampled negatives
    have no effect on the loss; here they are the action set of the logsumexp.

    Diagnostics: ``loss/cql`` (with α), ``q/cql_gap`` (mean bracket, without α),
    ``q/cql_logsumexp`` (mean τ·logsumexp term).
    """
    soft_max = temperature * torch.logsumexp(q_set.float() / temperature, dim=1)  # [B]
    gap = soft_max - q_data.float()
    loss = alpha * gap.mean()
    return loss, {
        "loss/cql": loss.detach(),
        "q/cql_gap": gap.detach().mean(),
        "q/cql_logsumexp": soft_max.detach().mean(),
    }
