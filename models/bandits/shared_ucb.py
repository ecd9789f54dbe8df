"""Shared neural generalised UCB policies of the two-stage paper (§3.3, Eqs. 3 and 4).

Both share their GLM coefficients across all users and items and refit them every round by
gradient descent on all feedback so far (paper §4: lr 0.01, bilinear 0.001). Inputs are
augmented with a constant 1 (paper Table 3), so the models carry intercepts.

S-N-GALM-UCB keeps two families of inverses: per user, over the item representations shown to
it (the paper's ``A_i``), and per item, over the user representations it was shown to (``A_u``).
S-N-GBLM-UCB keeps one ``W`` over ``vec(x zᵀ)``; its size is ``(d1+1)(d2+1)`` squared, so
above ``max_full_dim`` it switches to the diagonal of ``W`` (``covariance='diagonal'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recrl.models.bandits.adam import Adam
from recrl.models.bandits.budget import BudgetConfig
from recrl.models.bandits.glm import with_bias
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from recrl.models.bandits.scores import galm_ucb_scores, gblm_ucb_scores
from recrl.models.bandits.sherman_morrison import identity_inverses, sherman_morrison_scatter
from torch import Tensor


class _FeedbackLog:
    """All (item representation, user representation, reward) rows seen so far."""

    def __init__(self) -> None:
        self.items: list[Tensor] = []
        self.users: list[Tensor] = []
        self.targets: list[Tensor] = []

    def add(self, items: Tensor, users: Tensor, targets: Tensor) -> None:
        self.items.append(items)
        self.users.append(users)
        self.targets.append(targets)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        return torch.cat(self.items), torch.cat(self.users), torch.cat(self.targets)


def _shown_rows(feedback: Feedback) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(user row index, item ids, x rows, z rows, targets), one per shown item, flattened."""
    context = feedback.context
    k = feedback.slates.shape[1]
    user_rows = torch.arange(len(context.user_ids)).repeat_interleave(k)
    items = feedback.slates.reshape(-1)
    x = with_bias(context.item_embeddings[items])
    z = with_bias(context.user_embeddings[user_rows])
    return user_rows, items, x, z, feedback.rewards.reshape(-1).to(x.dtype)


def logistic_residual(logits: Tensor, targets: Tensor) -> Tensor:
    """``(ρ(logit) − y) / N``: the gradient of the mean BCE with respect to each logit."""
    return (torch.sigmoid(logits) - targets) / len(targets)


@dataclass(frozen=True)
class GALMConfig(BudgetConfig):
    """S-N-GALM-UCB: ``ρ(γxᵀθ_x + (1−γ)θ_zᵀz) + β(γ‖x‖_{A_i⁻¹} + (1−γ)‖z‖_{A_u⁻¹})``."""

    beta: float = 0.1
    """β, weight of the confidence width (design.md §6: 0.1)."""
    gamma: float = 0.5
    """γ, item share of the additive model (1 − γ goes to the user part)."""
    lr: float = 0.01
    """Adam learning rate of the GLM refit (two-stage paper §4: 0.01)."""
    steps_per_round: int = 5
    """Full-batch gradient steps per refit (every round)."""


class GALMUCBPolicy(BanditPolicy):
    name = "s-n-galm-ucb"
    state_fields = ("theta_x", "theta_z", "user_inverses", "item_inverses")

    def __init__(
        self, n_users: int, n_items: int, item_dim: int, user_dim: int,
        config: GALMConfig | None = None,
    ) -> None:  # fmt: skip
        self.config = config or GALMConfig()
        self.theta_x = torch.zeros(item_dim + 1)
        self.theta_z = torch.zeros(user_dim + 1)
        self._adam_x = Adam(self.theta_x, self.config.lr)
        self._adam_z = Adam(self.theta_z, self.config.lr)
        self.user_inverses = identity_inverses(n_users, item_dim + 1)  # paper's A_i⁻¹
        self.item_inverses = identity_inverses(n_items, user_dim + 1)  # paper's A_u⁻¹
        self.log = _FeedbackLog()

    def scores(self, context: BanditContext) -> Tensor:
        return galm_ucb_scores(
            with_bias(context.item_embeddings), with_bias(context.user_embeddings),
            self.theta_x, self.theta_z,
            self.user_inverses[context.user_ids], context.per_item(self.item_inverses),
            gamma=self.config.gamma, beta=self.config.beta,
        )  # fmt: skip

    def update(self, feedback: Feedback) -> None:
        user_rows, items, x, z, targets = _shown_rows(feedback)
        users = feedback.context.user_ids[user_rows]
        self.user_inverses = sherman_morrison_scatter(self.user_inverses, users, x)
        self.item_inverses = sherman_morrison_scatter(self.item_inverses, items, z)
        self.log.add(x, z, targets)
        all_x, all_z, all_y = self.log.tensors()
        gamma = self.config.gamma
        for _ in range(self.config.steps_per_round):  # mean BCE of the additive logit
            residual = logistic_residual(
                gamma * all_x @ self.theta_x + (1 - gamma) * all_z @ self.theta_z, all_y
            )
            self._adam_x.step(gamma * all_x.T @ residual)
            self._adam_z.step((1 - gamma) * all_z.T @ residual)


@dataclass(frozen=True)
class GBLMConfig(BudgetConfig):
    """S-N-GBLM-UCB: ``ρ(xᵀΘz) + β‖vec(xzᵀ)‖_{W⁻¹}``, ``W = I + Σ vec(xzᵀ)vec(xzᵀ)ᵀ``."""

    beta: float = 0.1
    """β, weight of the confidence width (design.md §6: 0.1)."""
    lr: float = 0.001
    """Adam learning rate of the bilinear refit (two-stage paper §4: 0.001)."""
    steps_per_round: int = 5
    """Full-batch gradient steps per refit (every round)."""
    covariance: str = "auto"
    """``full`` W⁻¹, ``diagonal`` (W kept diagonal), or ``auto``: full up to ``max_full_dim``."""
    max_full_dim: int = 1024
    """Largest (d1+1)(d2+1) kept as a full matrix under ``auto`` (1024² floats = 4 MiB)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.covariance not in ("auto", "full", "diagonal"):
            raise ValueError(
                f"GBLMConfig.covariance must be auto, full or diagonal, not {self.covariance!r}."
            )


class GBLMUCBPolicy(BanditPolicy):
    name = "s-n-gblm-ucb"
    state_fields = ("theta", "inverse")

    def __init__(self, item_dim: int, user_dim: int, config: GBLMConfig | None = None) -> None:
        self.config = config = config or GBLMConfig()
        size = (item_dim + 1) * (user_dim + 1)
        full = config.covariance == "full" or (
            config.covariance == "auto" and size <= config.max_full_dim
        )
        self.inverse = torch.eye(size) if full else torch.ones(size)
        self.theta = torch.zeros(item_dim + 1, user_dim + 1)
        self._adam = Adam(self.theta, config.lr)
        self.log = _FeedbackLog()

    def scores(self, context: BanditContext) -> Tensor:
        return gblm_ucb_scores(
            with_bias(context.item_embeddings), with_bias(context.user_embeddings),
            self.theta, self.inverse, beta=self.config.beta,
        )  # fmt: skip

    def update(self, feedback: Feedback) -> None:
        _, _, x, z, targets = _shown_rows(feedback)
        vec = (x.unsqueeze(-1) * z.unsqueeze(-2)).flatten(-2)  # vec(x zᵀ), [N, (d1+1)(d2+1)]
        if self.inverse.dim() == 1:
            self.inverse = 1.0 / (1.0 / self.inverse + vec.square().sum(0))
        else:
            single = torch.zeros(len(vec), dtype=torch.long)
            self.inverse = sherman_morrison_scatter(self.inverse.unsqueeze(0), single, vec)[0]
        self.log.add(x, z, targets)
        all_x, all_z, all_y = self.log.tensors()
        for _ in range(self.config.steps_per_round):  # mean BCE of the bilinear logit
            residual = logistic_residual(((all_x @ self.theta) * all_z).sum(-1), all_y)
            self._adam.step(all_x.T @ (residual.unsqueeze(1) * all_z))
