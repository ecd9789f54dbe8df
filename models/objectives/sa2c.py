"""Stop-gradient weights of the phase-2 actor loss (SQN-SAC, Xin et al. 2020; SA2C, Xin et al.
2022, as summarised in SASRec-CCQL §3.2; design.md §4 "Two-phase schedule" and "SA2C advantage").

After ``warmup_steps`` the supervised CE of each sample is multiplied by a weight computed from
the critic: Q(s, a) for SAC, the clipped advantage (times an optional propensity factor) for
SA2C. These functions return the weights [B]; ``ce_loss(logits, actions, weights)`` applies them.
All weights are detached: the critic is never trained through the actor's loss.

Deviation from the public reference code (design.md §8): the reference collapses the weights to one
scalar per batch; here they stay per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sac_weights(q_data: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """SQN-SAC weight ``w_b = sg(Q(s_b, a_b))``. Shapes: ``q_data`` = Q(s_b, a_b) [B] -> [B].

    Not clipped (as in SQN): a negative Q early in training makes that sample's CE term push
    the other way. Diagnostics: ``ce/weight_mean``, ``ce/weight_negative_frac``.
    """
    w = q_data.detach().float()
    return w, {"ce/weight_mean": w.mean(), "ce/weight_negative_frac": (w < 0).float().mean()}


def sa2c_advantage(
    q_data: Tensor, q_neg: Tensor, max_advantage: float = 10.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """SA2C advantage ``A_b = clip(Q(s_b, a_b) − mean_{a ∈ {a_b, a⁻_b1..a⁻_bN}} Q(s_b, a), 0, 10)``.

    The baseline is the mean Q over the logged action and its N sampled negatives (SA2C's
    estimate of V(s)). Detached. Shapes: ``q_data`` = Q(s_b, a_b) [B], ``q_neg`` =
    Q(s_b, a⁻_bn) [B, N] -> [B]. Diagnostics: ``q/advantage_mean`` (before clipping),
    ``q/advantage_clip_low_frac`` and ``q/advantage_clip_high_frac``.
    """
    q_pos = q_data.detach().float().unsqueeze(1)  # [B, 1]
    baseline = torch.cat([q_pos, q_neg.detach().float()], dim=1).mean(dim=1)  # [B]
    raw = q_pos.squeeze(1) - baseline
    adv = raw.clamp(0.0, max_advantage)
    return adv, {
        "q/advantage_mean": raw.mean(),
        "q/advantage_clip_low_frac": (raw < 0).float().mean(),
        "q/advantage_clip_high_frac": (raw > max_advantage).float().mean(),
    }


def propensity_factor(
    logits: Tensor,
    actions: Tensor,
    item_popularity: Tensor,
    smooth: float,
    low: float = 0.1,
    high: float = 10.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Off-policy correction ``clip(π(a|s) / pop(a), 0.1, 10) ** smooth`` (SA2C).

    ``π(a|s) = softmax(logits)[a]`` is the actor's probability of the logged action, computed
    as ``exp(logit_a − logsumexp(logits))``; ``pop(a) = count(a) / Σ count`` stands in for the
    behaviour policy. ``smooth = 0`` switches it off (all ones). Detached.

    Shapes: ``logits`` [B, I], ``actions`` [B], ``item_popularity`` [I] (counts or
    probabilities; normalised here) -> [B]. Diagnostics: ``ce/propensity_mean``.
    """
    if smooth == 0:
        ones = torch.ones(actions.shape[0], device=logits.device)
        return ones, {"ce/propensity_mean": ones.mean()}
    logits = logits.detach().float()
    a = actions.long().unsqueeze(1)
    log_pi = (logits.gather(1, a) - logits.logsumexp(dim=1, keepdim=True)).squeeze(1)
    pop = item_popularity.float()
    log_pop = (pop[actions.long()] / pop.sum()).log()
    ratio = (log_pi - log_pop).exp().clamp(low, high)
    factor = ratio.pow(smooth)
    return factor, {"ce/propensity_mean": factor.mean()}


def sa2c_weights(
    q_data: Tensor,
    q_neg: Tensor,
    actions: Tensor | None = None,
    logits: Tensor | None = None,
    item_popularity: Tensor | None = None,
    smooth: float = 0.0,
    max_advantage: float = 10.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SA2C weight ``w_b = A_b · clip(π(a_b|s_b) / pop(a_b), 0.1, 10) ** smooth`` [B], detached.

    ``q_data`` [B] and ``q_neg`` [B, N] as in `sa2c_advantage`; ``actions``, ``logits`` and
    ``item_popularity`` are needed only when ``smooth != 0``.
    Diagnostics: those of ``sa2c_advantage`` and ``propensity_factor``, plus ``ce/weight_mean``.
    """
    adv, diag = sa2c_advantage(q_data, q_neg, max_advantage)
    if smooth != 0:
        if actions is None or logits is None or item_popularity is None:
            raise ValueError(
                "sa2c_weights with smooth != 0 needs actions, logits and item_popularity."
            )
        factor, more = propensity_factor(logits, actions, item_popularity, smooth)
        adv = adv * factor
        diag.update(more)
    diag["ce/weight_mean"] = adv.mean()
    return adv, diag
