"""Policies without exploration state: Random, greedy (relevance only), N-Dropout-UCB."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recrl.models.bandits.budget import BudgetConfig
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from recrl.models.bandits.scores import dropout_ucb_scores, relevance
from torch import Tensor


class RandomPolicy(BanditPolicy):
    """Uniformly random slates (the reference of REN Fig. 1 and two-stage Table 4).

    Scores are i.i.d. uniform draws, so the top-k is a uniform k-subset without replacement.
    """

    name = "random"
    reads_representation = False

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, context: BanditContext) -> Tensor:
        shape = (context.user_ids.shape[0], context.n_items)
        return torch.rand(shape, generator=self.generator).to(context.item_embeddings.dtype)

    def update(self, feedback: Feedback) -> None:
        """Nothing to learn: the slates do not depend on feedback."""


@dataclass(frozen=True)
class GreedyConfig(BudgetConfig):
    """Relevance-only recommender: rank by ``ρ(μ_kᵀθ_u)``, no exploration term."""

    link: str = "identity"
    """``identity`` (the RNN recommender of REN Fig. 1) or ``sigmoid`` (N-Greedy, two-stage
    paper baseline 4: the two-tower click prediction); the ranking is the same."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.link not in ("identity", "sigmoid"):
            raise ValueError(
                f"GreedyConfig.link must be 'identity' or 'sigmoid', not {self.link!r}."
            )


class GreedyPolicy(BanditPolicy):
    """Greedy / N-Greedy: the representation model's prediction alone."""

    name = "greedy"

    def __init__(self, config: GreedyConfig | None = None) -> None:
        self.config = config or GreedyConfig()

    def scores(self, context: BanditContext) -> Tensor:
        score = relevance(context.item_embeddings, context.user_embeddings)
        return torch.sigmoid(score) if self.config.link == "sigmoid" else score

    def update(self, feedback: Feedback) -> None:
        """Nothing to learn here: the caller refits the representation model."""


@dataclass(frozen=True)
class DropoutUCBConfig(BudgetConfig):
    """N-Dropout-UCB: mean + β·std of Monte-Carlo dropout predictions (two-stage paper)."""

    beta: float = 0.1
    """β, weight of the uncertainty (design.md §6: 0.1)."""
    passes: int = 5
    """Forward passes with dropout on; the caller computes them (``mc_predictions``)."""
    dropout: float = 0.2
    """Dropout rate of those passes (two-stage paper §4: 0.2)."""


class DropoutUCBPolicy(BanditPolicy):
    """Scores from ``context.mc_predictions`` [P, U, I] (P = ``config.passes``). ``generator``
    is there for callers that draw the dropout masks themselves (the latent-factor model)."""

    name = "n-dropout-ucb"

    def __init__(self, config: DropoutUCBConfig | None = None, seed: int = 0) -> None:
        self.config = config or DropoutUCBConfig()
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, context: BanditContext) -> Tensor:
        predictions = context.require("mc_predictions", self.name)
        return dropout_ucb_scores(predictions, beta=self.config.beta)

    def update(self, feedback: Feedback) -> None:
        """Nothing to learn here: the uncertainty comes from the caller's network."""
