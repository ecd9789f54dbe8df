"""Negative-action sampling (SNQN / SA2C, Xin et al. 2022; SASRec-CCQL §3.2-3.3; SPEC §4
"Negative actions"): ``n_neg`` items per row, never the row's logged action."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_negatives(
    actions: Tensor,
    n_items: int,
    n_neg: int,
    generator: torch.Generator,
    item_popularity: Tensor | None = None,
    max_rounds: int = 4,
) -> Tensor:
    """Sample ``n_neg`` negatives per row, with replacement, never equal to ``actions[b]``.

    - Uniform (``item_popularity`` None): draw ``u ~ U{0..I−2}`` and return ``u + (u ≥ a)``,
      which is exactly uniform over the I − 1 items other than ``a``, with no resampling.
    - By popularity (``item_popularity`` [I], counts or probabilities): draw from ``pop`` and
      redraw the collisions with ``a`` (rejection sampling, so still exactly ``pop`` conditioned
      on ``≠ a``) for ``max_rounds`` rounds, without a host sync; a collision left after that
      (probability ``pop(a)^(max_rounds+1)``) falls back to the uniform shift.

    Shapes: ``actions`` [B] int -> [B, n_neg] int64 on ``actions``' device; ``generator`` must
    live on that device too.
    """
    if n_items < 2:
        raise ValueError(f"need n_items >= 2 to sample a negative, got {n_items}.")
    a = actions.long().unsqueeze(1)  # [B, 1]
    shape = (actions.shape[0], n_neg)
    if item_popularity is None:
        u = torch.randint(n_items - 1, shape, generator=generator, device=a.device)
        return u + (u >= a).long()
    probs = item_popularity.float().to(a.device)

    def draw() -> Tensor:
        flat = torch.multinomial(probs, shape[0] * n_neg, replacement=True, generator=generator)
        return flat.view(shape)

    neg = draw()
    for _ in range(max_rounds):  # fixed count, no host sync: a round without clashes is a no-op
        neg = torch.where(neg == a, draw(), neg)
    u = torch.randint(n_items - 1, shape, generator=generator, device=a.device)
    return torch.where(neg == a, u + (u >= a).long(), neg)
