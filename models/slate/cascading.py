"""Cascading Q-networks (Chen et al. 2019, §5.1-5.2, eq. 9, Algorithm 1).

k networks Q_1..Q_k; Q_j scores candidate a_j given the state and the items already
chosen: Q_j(s, a*_1, …, a*_{j-1}, a_j) = q_jᵀ σ(L_j [s, f_{a*_1}, …, f_{a*_{j-1}}, f_{a_j}] + c_j).
The greedy slate picks a*_1 = argmax Q_1, then a*_2 = argmax Q_2 given a*_1, … with chosen
items removed: k passes over the pool, O(k·|I|), vectorised over the batch.

Implementation note: L_j acts on a concatenation, so L_j [s, f_chosen, f_a] splits exactly
into L_j^s s + L_j^c vec(f_chosen) + L_j^a f_a. The first two terms are one vector per row
and the last one per candidate, so a pass costs one [B, P, ℓ] activation instead of a
[B, P, S + j·d] input; the pool is processed in chunks of ``chunk`` candidates (128: a
[B, 128, ℓ] block stays in cache, measured 1.5× faster than 2,048 on a 2-core CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

QFunction = Callable[[int, Tensor], Tensor]
"""``q(j, chosen) -> [B, P]``: Q_{j+1} of every candidate given the chosen slots [B, j]."""


def cascade_argmax(q: QFunction, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Algorithm 1: for j = 1..k, a*_j = argmax over available candidates of Q_j.

    mask: bool [B, P] available candidates. Returns the chosen slots int64 [B, k] and
    their values Q_j(s, a*_1..a*_j) [B, k]. Raises if a row has fewer than k candidates.
    """
    if int(mask.sum(dim=1).min()) < k:
        raise ValueError(f"every row needs at least k={k} available candidates")
    b = mask.shape[0]
    rows = torch.arange(b, device=mask.device)
    available = mask.clone()
    chosen = torch.empty(b, 0, dtype=torch.long, device=mask.device)
    values = []
    for j in range(k):
        scores = q(j, chosen).masked_fill(~available, float("-inf"))
        value, slot = scores.max(dim=1)
        chosen = torch.cat([chosen, slot[:, None]], dim=1)
        available[rows, slot] = False
        values.append(value)
    return chosen, torch.stack(values, dim=1)


class CascadingQNetwork(nn.Module):
    """Q_1..Q_k of eq. 9 on a state vector [B, S] and item feature vectors of size d."""

    def __init__(self, state_dim: int, item_dim: int, slate_size: int, hidden: int = 64,
                 chunk: int = 128) -> None:  # fmt: skip
        super().__init__()
        self.k, self.item_dim, self.chunk = slate_size, item_dim, chunk
        self.state_in = nn.ModuleList(nn.Linear(state_dim, hidden) for _ in range(slate_size))
        self.chosen_in = nn.ModuleList(
            nn.Linear(max(j, 1) * item_dim, hidden, bias=False) for j in range(slate_size)
        )  # chosen_in[0] is unused: Q_1 sees no chosen item
        self.candidate_in = nn.ModuleList(
            nn.Linear(item_dim, hidden, bias=False) for _ in range(slate_size)
        )
        self.out = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(slate_size))

    def _row_part(self, j: int, state: Tensor, chosen_features: Tensor) -> Tensor:
        base = self.state_in[j](state)
        if j:
            base = base + self.chosen_in[j](chosen_features.flatten(1))
        return base  # [B, ℓ]

    def q_candidates(
        self, j: int, state: Tensor, chosen_features: Tensor, candidate_features: Tensor
    ) -> Tensor:
        """Q_{j+1} of every candidate: chosen_features [B, j, d], candidate_features
        [B or 1, P, d] → [B, P]."""
        base = self._row_part(j, state, chosen_features)[:, None, :]
        parts = []
        for lo in range(0, candidate_features.shape[1], self.chunk):
            cand = self.candidate_in[j](candidate_features[:, lo : lo + self.chunk])
            parts.append(self.out[j](nn.functional.elu(base + cand)).squeeze(-1))
        return torch.cat(parts, dim=1)

    def q_values(self, state: Tensor, slate_features: Tensor) -> Tensor:
        """Q_j(s, a_1..a_{j-1}, a_j) of a given slate [B, k, d] in its order → [B, k]."""
        return torch.stack(
            [
                self.q_candidates(j, state, slate_features[:, :j], slate_features[:, j : j + 1])[
                    :, 0
                ]
                for j in range(self.k)
            ],
            dim=1,
        )

    def greedy_slate(
        self, state: Tensor, candidate_features: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Algorithm 1 with this network: slots [B, k] and Q_j values [B, k]."""
        b = state.shape[0]

        def q(j: int, chosen: Tensor) -> Tensor:
            feats = candidate_features.expand(b, -1, -1)
            picked = torch.gather(feats, 1, chosen[:, :, None].expand(-1, -1, self.item_dim))
            return self.q_candidates(j, state, picked, candidate_features)

        return cascade_argmax(q, mask, self.k)


def next_state_value(
    selector: CascadingQNetwork,
    evaluator: CascadingQNetwork,
    state: Tensor,
    candidate_features: Tensor,
    mask: Tensor,
) -> Tensor:
    """Q_k(s', a*'_{1:k}) of eq. 11: a*' is the greedy cascade of ``selector`` (the online
    network: double Q, design.md §4; pass the target network for the paper's plain target) and
    the value is ``evaluator``'s (target network) Q_k of that slate. → [B], no gradient."""
    with torch.no_grad():
        slots, _ = selector.greedy_slate(state, candidate_features, mask)
        feats = candidate_features.expand(state.shape[0], -1, -1)
        slate = torch.gather(feats, 1, slots[:, :, None].expand(-1, -1, feats.shape[2]))
        return evaluator.q_values(state, slate)[:, -1]
