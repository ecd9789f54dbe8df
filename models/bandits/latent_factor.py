"""An online latent-factor representation for bandit runs: ridge ALS with Gaussian priors.

REN and the neural policies score with embeddings learned from the feedback they collect
(REN paper Alg. 1 line 16: "update the model using collected feedback"). This model is the
cheapest such learner that still *learns* the latent space instead of being handed it: the
reward of (u, i) is modelled as ``θ_uᵀμ_i`` and refit by alternating ridge regressions,

    θ_u = (l2·I + Σ_{(u,i)} μ_iμ_iᵀ)⁻¹ (l2·θ⁰_u + Σ r_ui μ_i),   and symmetrically for μ_i,

a MAP estimate under priors ``θ_u ~ N(θ⁰_u, I/l2)``, ``μ_i ~ N(μ⁰_i, I/l2)`` with small random
prior means (so never-shown items still differ). REN paper §"Beyond RNN": the user embedding
may come from an RNN, a transformer or matrix factorisation; a linear RNN over the history
with tied weights is this ridge regression. Every shown item is a row: the chosen one with its
reward, the others with 0 (they were shown and not taken).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LatentFactorConfig:
    """Online ridge ALS: ``r_ui ≈ θ_uᵀμ_i``."""

    embedding_dim: int = 8
    """Width d of the user and item embeddings (the models do not know the environment's
    latent width)."""
    l2: float = 1.0
    """Prior precision of every embedding (ridge weight)."""
    init_std: float = 0.1
    """Std of the random prior means θ⁰, μ⁰."""
    sweeps: int = 2
    """Alternating (users, then items) ridge sweeps per refit."""


def ridge_rows(
    index: Tensor, n_rows: int, features: Tensor, targets: Tensor, prior_mean: Tensor, l2: float
) -> Tensor:
    """Ridge solution per row of the output: row ``j`` fits the observations with ``index == j``.

    ``index`` [N], ``features`` [N, d], ``targets`` [N], ``prior_mean`` [n_rows, d] ->
    [n_rows, d] = ``(l2·I + Σ f fᵀ)⁻¹ (l2·prior + Σ y f)``; rows without data keep the prior.
    """
    dim = features.shape[1]
    outer = (features.unsqueeze(2) * features.unsqueeze(1)).reshape(-1, dim * dim)
    # index_add_ on 2-D rows is several times faster than on [n, d, d] blocks
    gram = torch.zeros(n_rows, dim * dim, dtype=features.dtype).index_add_(0, index, outer)
    gram = gram.view(n_rows, dim, dim) + l2 * torch.eye(dim, dtype=features.dtype)
    rhs = (l2 * prior_mean).index_add(0, index, features * targets.unsqueeze(1))
    return torch.linalg.solve(gram, rhs)


class LatentFactorModel:
    """Item table μ [I, d] and user table θ [n_users, d], refit from all observations."""

    def __init__(
        self, n_users: int, n_items: int, config: LatentFactorConfig | None = None, seed: int = 0
    ) -> None:
        self.config = config = config or LatentFactorConfig()
        generator = torch.Generator().manual_seed(seed)
        width = config.embedding_dim
        self.user_prior = config.init_std * torch.randn(n_users, width, generator=generator)
        self.item_prior = config.init_std * torch.randn(n_items, width, generator=generator)
        self.user_embeddings = self.user_prior.clone()
        self.item_embeddings = self.item_prior.clone()
        self._users: list[Tensor] = []
        self._items: list[Tensor] = []
        self._targets: list[Tensor] = []

    @property
    def n_observations(self) -> int:
        return sum(len(t) for t in self._targets)

    def observe(self, users: Tensor, items: Tensor, targets: Tensor) -> None:
        """Record shown (user, item, reward) rows, [M] each; ``refit`` uses them."""
        self._users.append(users.reshape(-1).long())
        self._items.append(items.reshape(-1).long())
        self._targets.append(targets.reshape(-1).float())

    def refit(self) -> None:
        """``sweeps`` alternating ridge solves over everything observed so far."""
        if not self._targets:
            return
        users, items = torch.cat(self._users), torch.cat(self._items)
        targets = torch.cat(self._targets)
        l2 = self.config.l2
        for _ in range(self.config.sweeps):
            self.user_embeddings = ridge_rows(
                users, len(self.user_prior), self.item_embeddings[items], targets,
                self.user_prior, l2,
            )  # fmt: skip
            self.item_embeddings = ridge_rows(
                items, len(self.item_prior), self.user_embeddings[users], targets,
                self.item_prior, l2,
            )  # fmt: skip

    def predictions(self, users: Tensor) -> Tensor:
        """Predicted rewards ``θ_uᵀμ_i`` [U, I]."""
        return self.user_embeddings[users] @ self.item_embeddings.T

    def mc_predictions(
        self, users: Tensor, passes: int, dropout: float, generator: torch.Generator
    ) -> Tensor:
        """[P, U, I] predictions with inverted dropout on the user embedding's units, one
        mask per pass and user (the Monte-Carlo dropout of Gal & Ghahramani 2016)."""
        theta = self.user_embeddings[users]  # [U, d]
        keep = torch.rand((passes, *theta.shape), generator=generator) >= dropout
        return (theta * keep / (1.0 - dropout)) @ self.item_embeddings.T
