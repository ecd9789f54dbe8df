"""Objectives of the GAN user model (Chen et al. 2019, §4.3), pure functions on tensors.

Shapes: B page views, K shown slots; choice columns are the K slots plus no-click (last,
reward 0), so ``[B, K + 1]``. ``click`` holds the slot, or -1 for no click. Every function
returns ``(scalar loss, dict of detached diagnostics)`` or plain tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor


def choice_targets(click: Tensor, k: int) -> Tensor:
    """Column of the observed choice in ``[B, K + 1]``: the slot, or K for no-click."""
    return torch.where(click < 0, torch.full_like(click, k), click)


def choice_mask(shown_mask: Tensor) -> Tensor:
    """bool [B, K + 1]: real slots plus the always-available no-click column."""
    return torch.cat([shown_mask, shown_mask.new_ones(shown_mask.shape[0], 1)], dim=1)


def entropy_best_response(reward: Tensor, mask: Tensor, eta: float) -> Tensor:
    """Lemma 1: argmax_φ∈Δ Σ φ_i r_i − (1/η) Σ φ_i log φ_i = softmax(η r) over ``mask``."""
    return torch.softmax((eta * reward).masked_fill(~mask, float("-inf")), dim=1)


def l2_best_response(reward: Tensor, mask: Tensor, eta: float) -> Tensor:
    """argmax_φ∈Δ Σ φ_i r_i − ‖φ‖²/η = Euclidean projection of η r / 2 onto the simplex
    (the KKT conditions give φ_i = max(η r_i / 2 − τ, 0) with τ making Σ φ = 1).

    Sort-based projection (Held et al. 1974) over the unmasked entries: [B, C] → [B, C].
    """
    z = (eta * reward / 2).masked_fill(~mask, float("-inf"))
    sorted_z, _ = torch.sort(z, dim=1, descending=True)
    finite = torch.isfinite(sorted_z)
    csum = torch.cumsum(torch.where(finite, sorted_z, torch.zeros_like(sorted_z)), dim=1)
    j = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    support = finite & (sorted_z - (csum - 1) / j > 0)
    rho = support.sum(dim=1, keepdim=True).clamp(min=1)
    tau = (torch.gather(csum, 1, rho - 1) - 1) / rho.to(z.dtype)
    return torch.where(mask, torch.clamp(z - tau, min=0), torch.zeros_like(z))


def regularised_value(
    phi: Tensor, reward: Tensor, mask: Tensor, eta: float, regularizer: str
) -> Tensor:
    """The user's objective of eq. 2 per row: Σ φ r − R(φ)/η, with R = Σ φ log φ
    (``shannon``) or ‖φ‖² (``l2``); masked entries must have φ = 0. → [B]."""
    r = torch.where(mask, reward, torch.zeros_like(reward))
    if regularizer == "shannon":
        penalty = torch.where(phi > 0, phi * torch.log(phi.clamp(min=1e-30)), torch.zeros_like(phi))
    elif regularizer == "l2":
        penalty = phi**2
    else:
        raise ValueError(f"unknown regularizer {regularizer!r}")
    return (phi * r).sum(dim=1) - penalty.sum(dim=1) / eta


def shannon_mle_loss(logits: Tensor, click: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Lemma 2: under R(φ) = Σ φ log φ the min-max of eq. 5 is maximum likelihood,

        min_θ  − (1/T) Σ_t log [ exp(η r_θ(s_t, a_t)) / Σ_{a ∈ A_t ∪ {∅}} exp(η r_θ(s_t, a)) ]

    logits: η·r_θ [B, K + 1] (−inf on padding, no-click last, see `choice_logits_from_utility`);
    click: int64 [B] slot or -1. Diagnostics: ``loss/nll``, ``choice/no_click_prob``.
    """
    k = logits.shape[1] - 1
    log_phi = torch.log_softmax(logits, dim=1)
    nll = -log_phi.gather(1, choice_targets(click, k)[:, None]).squeeze(1)
    loss = nll.mean()
    return loss, {
        "loss/nll": loss.detach(),
        "choice/no_click_prob": log_phi[:, k].exp().mean().detach(),
    }


def adversarial_generator_loss(
    phi_logits: Tensor, reward: Tensor, mask: Tensor, *, eta: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The user model's (α) step of eq. 6 with R(φ) = ‖φ‖²: ascend E_φα[r_θ] − R(φ_α)/η.

    phi_logits: [B, K + 1] logits of φ_α (−inf masked); reward: r_θ [B, K + 1] (no-click
    0), treated as fixed. Loss = −mean(Σ φ r − ‖φ‖²/η). Diagnostic ``adv/gap_to_best``: how
    far φ_α's value is below the exact best response (`l2_best_response`), ≥ 0.
    """
    reward = reward.detach()
    phi = torch.softmax(phi_logits, dim=1)
    value = regularised_value(phi, reward, mask, eta, "l2")
    best = regularised_value(l2_best_response(reward, mask, eta), reward, mask, eta, "l2")
    loss = -value.mean()
    return loss, {
        "loss/generator": loss.detach(),
        "adv/gap_to_best": (best - value).mean().detach(),
    }


def adversarial_reward_loss(
    phi: Tensor, reward: Tensor, click: Tensor, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """The reward's (θ) step of eq. 6: descend E_φα[r_θ] − r_θ(s_t, a_t^true).

    phi: φ_α [B, K + 1] (treated as fixed); reward: r_θ [B, K + 1]; click: slot or -1.
    The regulariser does not depend on θ, so it drops out of this step.
    """
    phi = phi.detach()
    r = torch.where(mask, reward, torch.zeros_like(reward))
    true = r.gather(1, choice_targets(click, r.shape[1] - 1)[:, None]).squeeze(1)
    gap = (phi * r).sum(dim=1) - true
    loss = gap.mean()
    return loss, {"loss/reward": loss.detach(), "adv/true_reward": true.mean().detach()}
