"""Acquisition scores of the bandit policies of design.md §6, as pure functions on tensors.

Notation: ``U`` users scored at once, ``I`` candidate items, ``d`` (``d1``) the item
embedding width, ``d2`` the user embedding width. Every function returns a [U, I] tensor;
higher is better. Nothing here reads or writes policy state.
"""

from __future__ import annotations

import torch
from recrl.models.bandits.sherman_morrison import quadratic_form
from torch import Tensor


def relevance(item_embeddings: Tensor, user_embeddings: Tensor) -> Tensor:
    """``μ_kᵀθ_u``: the relevance term shared by greedy and REN. [I, d], [U, d] -> [U, I]."""
    return user_embeddings @ item_embeddings.T


def ren_scores(
    item_embeddings: Tensor,
    user_embeddings: Tensor,
    quadratic_forms: Tensor,
    impressions: Tensor,
    *,
    lambda_d: float,
    lambda_u: float,
) -> Tensor:
    """REN acquisition score (Wang et al., AAAI 2022, Eq. 5):

        p_k = μ_kᵀθ + λ_d·√(μ_kᵀ(I + DᵀD)⁻¹μ_k) + λ_u·‖σ_k‖∞,   σ_k = 1/√(1 + n_k)

    ``item_embeddings`` μ [I, d], ``user_embeddings`` θ [U, d], ``quadratic_forms``
    μ_kᵀA_u⁻¹μ_k [U, I] (``A_u = I + D_uᵀD_u``, D_u = embeddings of user u's history),
    ``impressions`` n_k [I]. The paper's ``diag(σ_k) = 1/√n_k`` is undefined for a never
    shown item; ``n_k + 1`` gives it σ = 1, the ``‖σ_1,k‖∞ = 1`` of the paper's Lemma 4.
    REN-1,2 is ``lambda_u = 0``; REN-1,3 is ``lambda_d = 0``; greedy is both zero.
    """
    sigma = (impressions.to(item_embeddings.dtype) + 1.0).rsqrt()  # [I]; ‖σ‖∞ of diag(σ)
    return (
        relevance(item_embeddings, user_embeddings)
        + lambda_d * quadratic_forms.sqrt()
        + lambda_u * sigma.unsqueeze(0)
    )


def glm_ucb_scores(
    item_features: Tensor,
    coefficients: Tensor,
    inverses: Tensor,
    *,
    beta: float,
    link: str = "sigmoid",
) -> Tensor:
    """GLM-UCB (Filippi et al. 2010; two-stage paper Eq. 2), one coefficient vector per user:

        α(u, i) = ρ(x_iᵀθ̂_u) + β·‖x_i‖_{M_u⁻¹},   ρ = sigmoid,  M_u = I + D_uᵀD_u

    ``item_features`` x [I, d], ``coefficients`` θ̂ [U, d], ``inverses`` M⁻¹ [U, d, d].
    ``link="identity"`` drops ρ: LinUCB (Li et al. 2010).
    """
    mean = relevance(item_features, coefficients)
    if link == "sigmoid":
        mean = torch.sigmoid(mean)
    width = quadratic_form(inverses, item_features.expand(len(inverses), -1, -1)).sqrt()
    return mean + beta * width


def dropout_ucb_scores(mc_predictions: Tensor, *, beta: float) -> Tensor:
    """N-Dropout-UCB (Gal & Ghahramani 2016; two-stage paper §4.1, baseline 5):

        α(u, i) = mean_p ŷ^p_{u,i} + β·std_p ŷ^p_{u,i}

    ``mc_predictions`` [P, U, I]: click predictions of P forward passes with dropout on
    (the paper uses P = 5). The std is the unbiased sample std over the P passes.
    """
    if mc_predictions.shape[0] < 2:
        raise ValueError("N-Dropout-UCB needs at least 2 Monte-Carlo passes to estimate a std.")
    return mc_predictions.mean(0) + beta * mc_predictions.std(0)


def galm_ucb_scores(
    item_embeddings: Tensor,
    user_embeddings: Tensor,
    theta_x: Tensor,
    theta_z: Tensor,
    user_inverses: Tensor,
    item_inverses: Tensor,
    *,
    gamma: float,
    beta: float,
) -> Tensor:
    """S-N-GALM-UCB (two-stage paper Eq. 3), coefficients shared by all users and items:

        α(u, i) = ρ(γ·x_iᵀθ̂_x + (1−γ)·θ̂_zᵀz_u) + β·(γ·‖x_i‖_{A_i⁻¹} + (1−γ)·‖z_u‖_{A_u⁻¹})

    ``item_embeddings`` x [I, d1], ``user_embeddings`` z [U, d2], ``theta_x`` [d1],
    ``theta_z`` [d2]. ``user_inverses`` [U, d1, d1]: the paper's A_i⁻¹, built from the item
    representations user u has been shown; ``item_inverses`` [I, d2, d2]: the paper's A_u⁻¹,
    built from the user representations item i has been shown to.
    """
    logit = gamma * (item_embeddings @ theta_x).unsqueeze(0) + (1 - gamma) * (
        user_embeddings @ theta_z
    ).unsqueeze(1)
    item_width = quadratic_form(user_inverses, item_embeddings.expand(len(user_inverses), -1, -1))
    # ‖z_u‖ in item i's metric: [I, U] -> [U, I]
    user_width = quadratic_form(item_inverses, user_embeddings.expand(len(item_inverses), -1, -1))
    width = gamma * item_width.sqrt() + (1 - gamma) * user_width.T.sqrt()
    return torch.sigmoid(logit) + beta * width


def bilinear_features(item_embeddings: Tensor, user_embeddings: Tensor) -> Tensor:
    """``vec(x_i z_uᵀ)`` for every (user, item) pair: [I, d1], [U, d2] -> [U, I, d1·d2]
    (row-major: entry ``a·d2 + b`` is ``x_a·z_b``). Only for small sizes and tests."""
    outer = item_embeddings.unsqueeze(0).unsqueeze(-1) * user_embeddings[:, None, None, :]
    return outer.flatten(-2)


def gblm_ucb_scores(
    item_embeddings: Tensor,
    user_embeddings: Tensor,
    theta: Tensor,
    inverse: Tensor,
    *,
    beta: float,
) -> Tensor:
    """S-N-GBLM-UCB (two-stage paper Eq. 4), one bilinear coefficient matrix for all pairs:

        α(u, i) = ρ(x_iᵀΘ̂z_u) + β·‖vec(x_i z_uᵀ)‖_{W⁻¹}

    ``theta`` Θ̂ [d1, d2]; ``inverse`` W⁻¹ [d1·d2, d1·d2] (full) or [d1·d2] (the diagonal
    option: W kept diagonal, ``W⁻¹`` its reciprocal). The full form never builds the
    [U, I, d1·d2] features: with W⁻¹ seen as [d1, d2, d1, d2], contracting ``z`` on both
    user axes gives a [U, d1, d1] matrix ``M_u``, and ``‖vec(xzᵀ)‖²_{W⁻¹} = xᵀM_u x`` —
    O(U·(d1d2)² + U·I·d1²) instead of O(U·I·(d1d2)²).
    """
    d1, d2 = theta.shape
    mean = torch.sigmoid((user_embeddings @ theta.T) @ item_embeddings.T)  # [U, I]
    if inverse.dim() == 1:
        # Σ_ab x_a² z_b² / W_ab
        form = (user_embeddings.square() @ inverse.view(d1, d2).T) @ item_embeddings.square().T
    else:
        w = inverse.view(d1, d2, d1, d2)
        metric = torch.einsum("abce,ub,ue->uac", w, user_embeddings, user_embeddings)
        form = quadratic_form(metric, item_embeddings.expand(len(metric), -1, -1))
    return mean + beta * form.clamp_min(0.0).sqrt()
