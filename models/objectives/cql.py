"""Conservative Q-learning regulariser (Kumar et al. 2020) as used by SASRec-CCQL.

Paper: "Addressing challenges in RL for recommender systems with conservative objectives",
§3.3 eq. (2) (the CQL term) and eq. (4) (``L = L_CE + ω·L_Q + L_CO + α·L_CQL``); SPEC §4 "CQL".
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

CQLActions = Literal["negatives", "all"]


def cql_loss(
    q: Tensor,
    actions: Tensor,
    negatives: Tensor | None,
    alpha: float,
    temperature: float,
    action_set: CQLActions = "negatives",
) -> tuple[Tensor, dict[str, Tensor]]:
    """``α · 1/B · Σ_b [ τ · logsumexp_{a ∈ A(s_b)} Q(s_b, a)/τ − Q(s_b, a_b) ]``.

    ``A(s)`` is ``{a_data} ∪ {a⁻_1..a⁻_N}`` (``action_set="negatives"``, the paper's choice:
    Q is pushed down on sampled negatives instead of CQL's random actions) or every item
    (``action_set="all"``; cheap, the Q head outputs all items anyway). Sampled negatives form a
    multiset: a duplicate counts twice, as a Monte-Carlo estimate would. τ → 0 gives the max
    over A(s); at τ = 1 this is the CQL term of the paper's eq. (2). The loss already includes
    α: the caller adds it as is (do not multiply by ``cql_alpha`` again).

    Shapes: ``q`` = Q_online(s, ·) [B, I], ``actions`` [B] int, ``negatives`` [B, N] int
    (ignored, may be None, with ``action_set="all"``).

    Deviation from the public SASRec-CCQL reference code (SPEC §8): there the sampled negatives
    have no effect on the loss; here they are the action set of the logsumexp.

    Diagnostics: ``loss/cql`` (with α), ``q/cql_gap`` (mean bracket, without α; always ≥ 0
    since a_data ∈ A(s)), ``q/cql_logsumexp`` (mean τ·logsumexp term).
    """
    q_data = q.gather(1, actions.long().unsqueeze(1)).float()  # [B, 1]
    if action_set == "negatives":
        if negatives is None:
            raise ValueError('cql_loss(action_set="negatives") needs negatives [B, N].')
        q_set = torch.cat([q_data, q.gather(1, negatives.long()).float()], dim=1)  # [B, 1 + N]
    elif action_set == "all":
        q_set = q.float()  # [B, I]
    else:
        raise ValueError(f'action_set must be "negatives" or "all", got {action_set!r}.')
    soft_max = temperature * torch.logsumexp(q_set / temperature, dim=1)  # [B]
    gap = soft_max - q_data.squeeze(1)
    loss = alpha * gap.mean()
    return loss, {
        "loss/cql": loss.detach(),
        "q/cql_gap": gap.detach().mean(),
        "q/cql_logsumexp": soft_max.detach().mean(),
    }
