"""Full-ranking next-item metrics of the offline protocol (Xin et al. 2020/2022; design.md §2).

Every event is scored against the whole catalogue. Per batch we return sums and counts, so that
batches (and Ray workers) can be added up; ``finalize_ranking`` turns the totals into
``hr_{k}_{click|purchase}``, ``ndcg_{k}_{click|purchase}`` and ``reward_{k}``.

Ties are counted pessimistically: the rank of the true item is the number of items scoring at
least as high as it (itself included), ``rank = 1 + #{s > s_a} + #{s = s_a, other items}``.
A model that scores everything alike therefore ranks the truth last instead of first, so
degenerate (constant or collapsed bf16) scores can never look good.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
EVENTS: tuple[str, ...] = ("click", "purchase")


def true_item_ranks(scores: Tensor, actions: Tensor, seen: Tensor | None = None) -> Tensor:
    """1-based pessimistic rank of ``actions[b]`` among ``scores[b]`` -> [B] int64.

    ``scores`` [B, I]; ``actions`` [B] int. With ``seen`` [B, L] (state item ids; ids outside
    ``0..I-1``, e.g. ``pad_id``, are ignored) the seen items are removed from the ranking
    (``exclude_seen: true``); if the true item itself was seen it cannot be recommended, and its
    rank is ``I + 1`` (a miss at every k). A NaN true score also gets ``I + 1``.
    """
    n_items = scores.shape[1]
    a = actions.long().unsqueeze(1)
    miss = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    if seen is not None:
        seen = seen.long()
        valid = (seen >= 0) & (seen < n_items)
        column = seen.masked_fill(~valid, n_items)  # invalid ids go to a scratch column
        scratch = scores.new_empty(scores.shape[0], 1)
        scores = torch.cat([scores, scratch], dim=1).scatter_(1, column, float("-inf"))
        scores = scores[:, :n_items]
        miss = ((seen == a) & valid).any(dim=1)
    true_score = scores.gather(1, a)  # [B, 1]
    rank = (scores >= true_score).sum(dim=1)
    miss = miss | true_score.squeeze(1).isnan()
    return rank.masked_fill(miss, n_items + 1)


def ranking_sums(
    scores: Tensor,
    actions: Tensor,
    is_buy: Tensor,
    reward: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    seen: Tensor | None = None,
) -> dict[str, Tensor]:
    """Sums of hits, NDCG and reward for one batch, as float64 0-dim tensors.

    Shapes: ``scores`` [B, I], ``actions`` [B] int, ``is_buy`` [B] bool, ``reward`` [B] float
    (the event's reward: r_click or r_buy), ``seen`` [B, L] or None (see ``true_item_ranks``).

    Keys, for each k: ``hit_{k}_{event}`` = #events of that type with rank ≤ k;
    ``ndcg_{k}_{event}`` = Σ over those hits of ``1 / log2(rank + 1)``; ``reward_{k}`` = Σ over
    all hits of the event's reward; plus ``count_click`` and ``count_purchase``.
    """
    rank = true_item_ranks(scores, actions, seen).double()  # [B]
    gain = 1.0 / torch.log2(rank + 1.0)
    buy = is_buy.bool()
    event_masks = {"click": ~buy, "purchase": buy}
    reward = reward.double()
    sums: dict[str, Tensor] = {
        f"count_{event}": m.double().sum() for event, m in event_masks.items()
    }
    for k in ks:
        hit = rank <= k
        sums[f"reward_{k}"] = (reward * hit).sum()
        for event, m in event_masks.items():
            sums[f"hit_{k}_{event}"] = (hit & m).double().sum()
            sums[f"ndcg_{k}_{event}"] = (gain * (hit & m)).sum()
    return sums


def merge_sums(total: Mapping[str, Tensor | float], batch: Mapping[str, Tensor | float]) -> dict:
    """Element-wise sum of two ``ranking_sums`` results (an empty ``total`` is allowed)."""
    return {key: total.get(key, 0.0) + value for key, value in batch.items()}


def finalize_ranking(sums: Mapping[str, Tensor | float]) -> dict[str, float]:
    """Totals -> ``hr_{k}_{event}``, ``ndcg_{k}_{event}`` (means over that event type, NaN when
    the split has no such event) and ``reward_{k}`` (a total, as in Xin et al.). The ks are
    read from the ``reward_{k}`` keys. No ``@`` in names (MLflow rejects it)."""
    values = {key: float(value) for key, value in sums.items()}
    ks = sorted(int(key.split("_")[1]) for key in values if key.startswith("reward_"))
    out: dict[str, float] = {}
    for k in ks:
        for event in EVENTS:
            count = values[f"count_{event}"]
            for name, key in (("hr", f"hit_{k}_{event}"), ("ndcg", f"ndcg_{k}_{event}")):
                out[f"{name}_{k}_{event}"] = values[key] / count if count else math.nan
        out[f"reward_{k}"] = values[f"reward_{k}"]
    return out
