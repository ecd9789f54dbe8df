"""GLM-UCB / N-GLM-UCB (two-stage paper Eq. 2): one logistic model per user.

The policy is the same for both names; what differs is the representation the caller puts
in the context: fixed item features for GLM-UCB, the periodically retrained neural item
embeddings for N-GLM-UCB (Xu et al. 2020's neural-linear idea with a GLM head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recrl.models.bandits.budget import BudgetConfig
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from recrl.models.bandits.scores import glm_ucb_scores
from recrl.models.bandits.sherman_morrison import identity_inverses, sherman_morrison_scatter
from torch import Tensor


def with_bias(features: Tensor) -> Tensor:
    """Append a constant 1 to every row (the intercept of two-stage paper Table 3)."""
    return torch.cat([features, torch.ones_like(features[..., :1])], -1)


def fit_logistic_newton(
    features: Tensor, targets: Tensor, init: Tensor, *, l2: float = 1.0, steps: int = 3
) -> Tensor:
    """L2-regularised logistic regression by Newton steps (IRLS), warm-started.

    Minimises ``Σ_n BCE(ρ(x_nᵀθ), y_n) + ½·l2·‖θ‖²``; ``features`` [N, d], ``targets`` [N]
    in [0, 1] (soft labels allowed), ``init`` [d] -> θ [d]. With l2 = 1 the Hessian's prior
    part is the ``I`` of ``M_u = I + DᵀD``.
    """
    theta = init.clone()
    eye = torch.eye(features.shape[1], dtype=features.dtype)
    for _ in range(steps):
        p = torch.sigmoid(features @ theta)
        gradient = features.T @ (p - targets) + l2 * theta
        hessian = (features * (p * (1 - p)).unsqueeze(1)).T @ features + l2 * eye
        theta = theta - torch.linalg.solve(hessian, gradient)
    return theta


@dataclass(frozen=True)
class GLMUCBConfig(BudgetConfig):
    """Disjoint GLM-UCB: ``ρ(x_iᵀθ̂_u) + β·‖x_i‖_{M_u⁻¹}`` with θ̂_u refit every round."""

    beta: float = 0.1
    """β, weight of the confidence width (design.md §6: 0.1)."""
    l2: float = 1.0
    """Ridge weight of the logistic fit (1 matches the ``I`` in ``M_u = I + DᵀD``)."""
    newton_steps: int = 3
    """Warm-started Newton steps per refit."""
    link: str = "sigmoid"
    """``sigmoid`` (GLM-UCB, Bernoulli clicks) or ``identity`` (LinUCB: θ̂_u = M_u⁻¹b_u, the
    ridge solution, read off the Sherman–Morrison inverse with no fitting)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.link not in ("sigmoid", "identity"):
            raise ValueError(f"GLMUCBConfig.link must be sigmoid or identity, not {self.link!r}.")


class GLMUCBPolicy(BanditPolicy):
    """Per-user coefficients θ̂_u [n_users, d+1] and inverses M_u⁻¹ (Sherman–Morrison)."""

    name = "glm-ucb"
    state_fields = ("inverses", "coefficients")

    def __init__(self, n_users: int, item_dim: int, config: GLMUCBConfig | None = None) -> None:
        self.config = config or GLMUCBConfig()
        dim = item_dim + 1
        self.inverses = identity_inverses(n_users, dim)
        self.coefficients = torch.zeros(n_users, dim)
        self.responses = torch.zeros(n_users, dim)  # b_u = Σ r·x (LinUCB)
        self._features: dict[int, list[Tensor]] = {}
        self._targets: dict[int, list[Tensor]] = {}

    def scores(self, context: BanditContext) -> Tensor:
        users = context.user_ids
        return glm_ucb_scores(
            with_bias(context.item_embeddings), self.coefficients[users], self.inverses[users],
            beta=self.config.beta, link=self.config.link,
        )  # fmt: skip

    def update(self, feedback: Feedback) -> None:
        """Add the shown items to ``M_u`` (rank-one each) and refit the users' θ̂_u."""
        users = feedback.context.user_ids
        shown = with_bias(feedback.context.item_embeddings[feedback.slates])  # [U, k, d+1]
        k = feedback.slates.shape[1]
        self.inverses = sherman_morrison_scatter(
            self.inverses, users.repeat_interleave(k), shown.reshape(-1, shown.shape[-1])
        )
        if self.config.link == "identity":
            rewards = feedback.rewards.to(shown.dtype).unsqueeze(-1)
            self.responses.index_add_(0, users, (shown * rewards).sum(1))
            self.coefficients = (self.inverses @ self.responses.unsqueeze(-1)).squeeze(-1)
            return
        for row, user in enumerate(users.tolist()):
            self._features.setdefault(user, []).append(shown[row])
            self._targets.setdefault(user, []).append(feedback.rewards[row].to(shown.dtype))
            self.coefficients[user] = fit_logistic_newton(
                torch.cat(self._features[user]), torch.cat(self._targets[user]),
                self.coefficients[user], l2=self.config.l2, steps=self.config.newton_steps,
            )  # fmt: skip
