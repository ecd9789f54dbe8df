"""Additive slate Q-function, the paper's GDQN baseline (Chen et al. 2019, §6.2, Table 3).

Q(s, A) = Σ_{j=1..k} q(s, a_j): one item-wise network q(s, a) = wᵀ σ(L [s, f_a] + c) (a
`CascadingQNetwork` with a single level, whose Q_1 scores every candidate without any chosen
item). Because Q is a sum of independent terms, the best slate is simply the k available
candidates of highest q — no cascade is needed, and it cannot model how the items of a
slate compete for the single click, which is what the cascading Q-networks add.
"""

from __future__ import annotations

import torch
from recrl.models.slate.cascading import CascadingQNetwork
from torch import Tensor


def item_q(net: CascadingQNetwork, state: Tensor, candidate_features: Tensor) -> Tensor:
    """q(s, a) of every candidate: state [B, S], candidate_features [B or 1, P, d] → [B, P]."""
    if net.k != 1:
        raise ValueError(f"an additive Q uses a single-level network, this one has k={net.k}")
    none = candidate_features.new_zeros(state.shape[0], 0, net.item_dim)
    return net.q_candidates(0, state, none, candidate_features)


def additive_greedy_slate(
    net: CascadingQNetwork, state: Tensor, candidate_features: Tensor, mask: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """argmax_A Σ_j q(s, a_j) over k distinct available candidates = the top-k of q.

    mask: bool [B, P]. Returns slots int64 [B, k] (highest q first) and their q [B, k].
    """
    if int(mask.sum(dim=1).min()) < k:
        raise ValueError(f"every row needs at least k={k} available candidates")
    q = item_q(net, state, candidate_features).masked_fill(~mask, float("-inf"))
    values, slots = torch.topk(q, k, dim=1)
    return slots, values


def additive_next_value(
    selector: CascadingQNetwork,
    evaluator: CascadingQNetwork,
    state: Tensor,
    candidate_features: Tensor,
    mask: Tensor,
    k: int,
) -> Tensor:
    """Q(s', A*') = Σ_j q_evaluator(s', a*'_j) with A*' the top-k of ``selector`` (the online
    network: double Q, as for the cascade). → [B], no gradient."""
    with torch.no_grad():
        slots, _ = additive_greedy_slate(selector, state, candidate_features, mask, k)
        q = item_q(evaluator, state, candidate_features)
        return torch.gather(q, 1, slots).sum(dim=1)
